"""geolayers: geometric deep-learning building blocks for PyTorch."""

from geolayers import datasets, graph, invariant, ops, sets, testing

__version__ = "0.1.0"

__all__ = ["__version__", "datasets", "graph", "invariant", "ops", "sets", "testing"]
