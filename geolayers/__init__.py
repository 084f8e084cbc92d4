"""geolayers: geometric deep-learning building blocks for PyTorch."""

from geolayers import datasets, graph, hyperbolic, invariant, ops, sets, testing

__version__ = "0.1.0"

__all__ = ["__version__", "datasets", "graph", "hyperbolic", "invariant", "ops", "sets", "testing"]
