"""popef.torch: PyTorch modules on the PopEF runtime (skipped without torch)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import popef
import popef.torch
from popef.runtime import ModelRunner

from .torch_models import MobileNet, ResNet


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 5),
        torch.nn.Softmax(-1),
    ).eval()


def test_inference_model_runs_and_saves(tmp_path):
    model = small_net()
    x = torch.randn(3, 1, 8, 8)
    inference_model = popef.torch.inferenceModel(model)
    y = inference_model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (3, 5)
    np.testing.assert_allclose(y.numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    inference_model.save(tmp_path / "executable.popef")
    with ModelRunner(tmp_path / "executable.popef") as runner:
        out = runner.execute({"input": x.numpy()})
    np.testing.assert_allclose(next(iter(out.values())), y.numpy(), rtol=1e-6)
    assert inference_model(torch.randn(2, 1, 8, 8)).shape == (2, 5)  # new shape: exports again


def test_save_before_a_call_is_refused(tmp_path):
    with pytest.raises(popef.ExecutionError, match="call the model on a batch"):
        popef.torch.inferenceModel(small_net()).save(tmp_path / "m.popef")
    with pytest.raises(popef.ExecutionError, match="torch.nn.Module"):
        popef.torch.inferenceModel(42)


@pytest.mark.parametrize("network", [ResNet, MobileNet])
@pytest.mark.parametrize("executor", ["cpu", "ipu-model"])
def test_whole_networks_match_pytorch(network, executor):
    torch.manual_seed(0)
    model = network().eval()
    x = torch.randn(2, 3, 32, 32)
    options = popef.torch.Options().useExecutor(executor)
    y = popef.torch.inferenceModel(model, options)(x)
    np.testing.assert_allclose(y.numpy(), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None, reason="the dynamo exporter needs onnxscript"
)
def test_dynamo_exporter():
    model = small_net()
    options = popef.torch.Options()
    options.dynamo = True
    x = torch.randn(2, 1, 8, 8)
    y = popef.torch.inferenceModel(model, options)(x)
    np.testing.assert_allclose(y.numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
