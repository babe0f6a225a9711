"""Fixtures of the op tests."""

from __future__ import annotations

import pytest

# --------------------------------------------------------------------------------------------
# torch.nn.functional differential tests


@pytest.fixture(scope="module")
def torch_f():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch, torch.nn.functional
