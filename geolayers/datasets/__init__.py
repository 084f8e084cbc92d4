"""Readers for real data shipped with installed packages or the system, and procedural
generators. Nothing here downloads at run time.

The MUSAE readers build ``torch_geometric`` graphs; they load on first use, so that the other
readers do not pay for importing torch_geometric.
"""

import importlib
from typing import Any

from geolayers.datasets.mnist import load_mnist_sample, mnist_sample_path
from geolayers.datasets.multi_object import (
    POSE_SPLITS,
    MultiObjectScenes,
    make_multi_object_scenes,
    render_scenes,
)
from geolayers.datasets.node2vec_graphs import (
    NODE2VEC_GRAPHS,
    EdgeList,
    MultiLabels,
    Node2VecGraph,
    load_node2vec_graph,
    read_edge_list,
    read_multilabel_tsv,
)
from geolayers.datasets.shapes import (
    SHAPE_CLASSES,
    ShapeClouds,
    make_shapes,
    sample_surface,
    shape_centroid_z,
)
from geolayers.datasets.wordnet import (
    Hierarchy,
    hierarchy_from_edges,
    load_edge_list,
    load_wordnet_mammals,
    load_wordnet_nouns,
    transitive_closure,
)

_MUSAE = (
    "FACEBOOK_CLASSES",
    "TWITCH_CLASSES",
    "TWITCH_COUNTRIES",
    "load_musae_facebook",
    "load_musae_twitch",
)


def __getattr__(name: str) -> Any:
    if name in _MUSAE:
        value = getattr(importlib.import_module("geolayers.datasets.musae"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geolayers.datasets' has no attribute {name!r}")


__all__ = [
    "FACEBOOK_CLASSES",
    "NODE2VEC_GRAPHS",
    "EdgeList",
    "MultiLabels",
    "Node2VecGraph",
    "load_node2vec_graph",
    "read_edge_list",
    "read_multilabel_tsv",
    "Hierarchy",
    "MultiObjectScenes",
    "POSE_SPLITS",
    "TWITCH_CLASSES",
    "TWITCH_COUNTRIES",
    "hierarchy_from_edges",
    "load_edge_list",
    "load_mnist_sample",
    "load_musae_facebook",
    "load_musae_twitch",
    "load_wordnet_mammals",
    "load_wordnet_nouns",
    "make_multi_object_scenes",
    "mnist_sample_path",
    "render_scenes",
    "SHAPE_CLASSES",
    "ShapeClouds",
    "make_shapes",
    "sample_surface",
    "shape_centroid_z",
    "transitive_closure",
]
