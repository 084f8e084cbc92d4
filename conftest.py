"""Names every doctest in ``geolayers/`` may use without importing them."""

import pytest
import torch

import geolayers


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(torch=torch, nn=torch.nn, geolayers=geolayers)
