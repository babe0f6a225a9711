"""Whole random graphs against onnxruntime, when installed (skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

from popef.runtime import ModelRunner

from .helpers import RandomGraph, model_of, save_bytes, to_onnx

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional oracle")
pytest.importorskip("onnx", reason="onnx builds the oracle's models")

# Another implementation of every kernel (MLAS instead of numpy/OpenBLAS, other summation
# orders, other exp/tanh/erf approximations): float32 results agree to about 1e-5 relative.
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_agree_with_onnxruntime(seed):
    builder = RandomGraph(100 + seed).build()
    session = ort.InferenceSession(
        to_onnx(builder).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(seed)
    inputs = {
        name: rng.standard_normal(info.shape).astype(np.float32)
        for name, info in builder.inputs.items()
    }
    expected = dict(zip(builder.outputs, session.run(list(builder.outputs), inputs)))
    for executor in ("cpu", "ipu-model"):
        with ModelRunner(model_of(save_bytes(builder)), executor) as runner:
            got = runner.execute(inputs)
        for name, value in expected.items():
            np.testing.assert_allclose(
                got[name], value, rtol=RTOL, atol=ATOL, err_msg=f"{executor}, output {name}"
            )
