"""Readers for real data shipped with installed packages, and procedural generators.

Nothing here downloads at run time.
"""

from geolayers.datasets.mnist import load_mnist_sample, mnist_sample_path
from geolayers.datasets.musae import (
    FACEBOOK_CLASSES,
    TWITCH_CLASSES,
    TWITCH_COUNTRIES,
    load_musae_facebook,
    load_musae_twitch,
)
from geolayers.datasets.wordnet import (
    Hierarchy,
    hierarchy_from_edges,
    load_edge_list,
    load_wordnet_mammals,
    load_wordnet_nouns,
    transitive_closure,
)

__all__ = [
    "FACEBOOK_CLASSES",
    "Hierarchy",
    "TWITCH_CLASSES",
    "TWITCH_COUNTRIES",
    "hierarchy_from_edges",
    "load_edge_list",
    "load_mnist_sample",
    "load_musae_facebook",
    "load_musae_twitch",
    "load_wordnet_mammals",
    "load_wordnet_nouns",
    "mnist_sample_path",
    "transitive_closure",
]
