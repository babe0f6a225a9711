"""Gemm against torch when importable."""

from __future__ import annotations

import numpy as np
import pytest

from .common import _t, assert_close, rand, run_op


@pytest.mark.parametrize(
    "ta, tb, alpha, beta", [(0, 0, 1.0, 1.0), (1, 0, 0.5, 2.0), (0, 1, 1.0, 0.0), (1, 1, -1.5, 0.3)]
)
def test_gemm_matches_torch(torch_f, ta, tb, alpha, beta) -> None:
    torch, _ = torch_f
    a, b, c = rand(116, (7, 5)), rand(117, (5, 9)), rand(118, (9,))
    a_in, b_in = (a.T.copy() if ta else a), (b.T.copy() if tb else b)
    (y,) = run_op(
        "Gemm", {"transA": ta, "transB": tb, "alpha": alpha, "beta": beta}, [a_in, b_in, c]
    )
    want = torch.addmm(
        _t(torch, np.broadcast_to(c, (7, 9))), _t(torch, a), _t(torch, b), beta=beta, alpha=alpha
    )
    assert_close(y, want.numpy(), "f32_accumulate")
