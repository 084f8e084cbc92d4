"""Graphs: random walks, node2vec and attributed node embeddings, and graph layers.

* :class:`CSRGraph` and :func:`random_walks`: exact uniform, weighted and node2vec walks on the
  compiled :func:`geolayers.ops.random_walk` kernel.
* :class:`Node2Vec`: PyTorch Geometric's ``Node2Vec`` interface, plus :meth:`Node2Vec.fit`, the
  fused skip-gram path (:func:`train_skipgram`).
* :class:`FisherInformationEmbedding` (Chen et al., ICML 2023): a mixture-model message-passing
  layer, one EM step of K means over each neighbourhood; :func:`spherical_kmeans` initialises
  the means without labels.
* :class:`~geolayers.graph.musae.MUSAE`: MUSAE and AE attributed embeddings (Rozemberczki et al.).
* :class:`HamiltonianNodeEmbedding` (HamGNN, Kang et al., ICML 2023) evolves node features as the
  positions of a Hamiltonian system whose learned energy couples each node to its neighbours,
  integrated with a symplectic scheme written out here (leapfrog, symplectic Euler or implicit
  midpoint; no ODE library), so the flow conserves its energy to the integrator's order.
"""

from geolayers.graph.csr import CSRGraph
from geolayers.graph.fisher import FisherInformationEmbedding, spherical_kmeans
from geolayers.graph.hamiltonian import HAMILTONIANS, INTEGRATORS, HamiltonianNodeEmbedding
from geolayers.graph.musae import MUSAE
from geolayers.graph.node2vec import Node2Vec
from geolayers.graph.skipgram import SkipGram, train_skipgram
from geolayers.graph.walks import random_walks

__all__ = [
    "HAMILTONIANS",
    "INTEGRATORS",
    "CSRGraph",
    "FisherInformationEmbedding",
    "HamiltonianNodeEmbedding",
    "MUSAE",
    "Node2Vec",
    "SkipGram",
    "random_walks",
    "spherical_kmeans",
    "train_skipgram",
]
