"""geolayers: geometric deep-learning building blocks for PyTorch."""

import importlib
from types import ModuleType

from geolayers import ops, sets, testing

__version__ = "0.1.0"

# Areas that pull in torch_geometric, geoopt or matplotlib load on first use (``geolayers.graph``, or
# ``from geolayers.graph import ...``), so ``import geolayers`` stays as fast as torch itself.
_LAZY = (
    "canonical",
    "datasets",
    "distributed",
    "equivariant",
    "graph",
    "groups",
    "hyperbolic",
    "invariant",
    "metrics",
    "slots",
    "viz",
)


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        module = importlib.import_module(f"geolayers.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'geolayers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "__version__",
    "canonical",
    "datasets",
    "distributed",
    "equivariant",
    "graph",
    "groups",
    "hyperbolic",
    "invariant",
    "metrics",
    "ops",
    "sets",
    "slots",
    "testing",
    "viz",
]
