"""Graph layers built on :class:`torch_geometric.nn.MessagePassing`.

:class:`HamiltonianNodeEmbedding` (HamGNN, Kang et al., ICML 2023) evolves node features as the
positions of a Hamiltonian system whose learned energy couples each node to its neighbours,
integrated with a symplectic scheme written out here (leapfrog, symplectic Euler or implicit
midpoint; no ODE library), so the flow conserves its energy to the integrator's order.
"""

from geolayers.graph.csr import CSRGraph
from geolayers.graph.hamiltonian import HAMILTONIANS, INTEGRATORS, HamiltonianNodeEmbedding
from geolayers.graph.walks import random_walks

__all__ = ["HAMILTONIANS", "INTEGRATORS", "CSRGraph", "HamiltonianNodeEmbedding", "random_walks"]
