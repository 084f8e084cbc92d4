import pytest
import torch

from geolayers.testing import TOLERANCE


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    """Run a test in float64 (tolerance 1e-9) and float32 (tolerance 1e-4)."""
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCE[dtype]
