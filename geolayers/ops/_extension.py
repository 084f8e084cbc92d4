"""Loading of the compiled extension ``geolayers._C`` and the per-op backend choice.

The extension registers its schemas and kernels with the dispatcher when it is imported. If it
is missing (built with ``GEOLAYERS_NO_EXT=1``, or the build failed), geolayers still imports and
every op runs its pure-PyTorch reference; one warning says so. ``GEOLAYERS_FORCE_REFERENCE=1``
makes every op use its reference even when the extension is there (for debugging and tests).
"""

from __future__ import annotations

import os
import warnings

import torch

_LOAD_ERROR: str | None = None
try:
    from geolayers import _C  # noqa: F401  (import registers the ops)
except ImportError as err:  # pragma: no cover - exercised only on broken builds
    _LOAD_ERROR = f"{type(err).__name__}: {err}"
    warnings.warn(
        "geolayers: the compiled extension geolayers._C could not be loaded "
        f"({_LOAD_ERROR}); every op runs its pure-PyTorch reference. "
        "Rebuild with `pip install --no-build-isolation -e .` to get the kernels.",
        RuntimeWarning,
        stacklevel=2,
    )

EXTENSION_LOADED = _LOAD_ERROR is None
_warned_devices: set[tuple[str, str]] = set()


def force_reference() -> bool:
    return os.environ.get("GEOLAYERS_FORCE_REFERENCE", "0") == "1"


def has_kernel(op_name: str, device_type: str) -> bool:
    """Whether ``geolayers::op_name`` has a compiled kernel for ``device_type`` ("cpu", "cuda")."""
    if not EXTENSION_LOADED:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    if key is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"geolayers::{op_name}", key)


def use_kernel(op_name: str, device: torch.device) -> bool:
    """Choose between kernel and reference for one call; warn once per (op, device) on fallback."""
    if force_reference():
        return False
    if has_kernel(op_name, device.type):
        return True
    if EXTENSION_LOADED and (op_name, device.type) not in _warned_devices:
        _warned_devices.add((op_name, device.type))
        warnings.warn(
            f"geolayers: no compiled {op_name} kernel for device type '{device.type}' in this "
            "build; using the pure-PyTorch reference.",
            RuntimeWarning,
            stacklevel=3,
        )
    return False
