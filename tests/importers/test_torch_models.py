"""Whole PyTorch models, exported by both of torch's exporters, imported and run on both
executors; each must agree with onnxruntime on the same ONNX model and with PyTorch itself.

Skipped without torch (and onnxruntime); the dynamo exporter's cases without onnxscript.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import popef
import popef.torch
from popef.runtime import ModelRunner

from . import torch_models

HAVE_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
needs_onnxscript = pytest.mark.skipif(
    not HAVE_ONNXSCRIPT, reason="the dynamo exporter needs onnxscript"
)


def image_batch():
    return (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)


def token_batch():
    return (torch.randint(0, 500, (2, 10), generator=torch.Generator().manual_seed(1)),)


#: network -> (its inputs, absolute tolerance against onnxruntime and PyTorch)
NETWORKS = {
    "DenseNet": (image_batch, 1e-5),
    "Inception": (image_batch, 1e-5),
    "SqueezeNet": (image_batch, 1e-5),
    "ShuffleNet": (image_batch, 1e-5),
    "AlexNet": (image_batch, 1e-5),
    "VGG": (image_batch, 1e-5),
    "GPT2": (token_batch, 1e-4),
    "ViT": (image_batch, 1e-5),
}

#: (network, exporter) pairs that torch itself cannot export, with torch's reason
EXPORTER_LIMITS = {
    ("AlexNet", "legacy"): "the TorchScript exporter loses the shape after LocalResponseNorm and "
    "then cannot export adaptive_avg_pool2d ('input size not accessible')",
}


def cases():
    for name in NETWORKS:
        for exporter in ("legacy", "dynamo"):
            marks = [needs_onnxscript] if exporter == "dynamo" else []
            if (name, exporter) in EXPORTER_LIMITS:
                marks.append(
                    pytest.mark.xfail(
                        raises=popef.ExecutionError,
                        strict=True,
                        reason=EXPORTER_LIMITS[name, exporter],
                    )
                )
            yield pytest.param(name, exporter, marks=marks, id=f"{name}-{exporter}")


@pytest.mark.parametrize(("name", "exporter"), cases())
def test_network_matches_onnxruntime_and_pytorch(name, exporter, tmp_path):
    make_inputs, atol = NETWORKS[name]
    torch.manual_seed(0)
    model = getattr(torch_models, name)().eval()
    args = make_inputs()
    with torch.no_grad():
        expected = model(*args).numpy()

    options = popef.torch.Options().useDynamo(exporter == "dynamo")
    inference_model = popef.torch.inferenceModel(model, options)
    got_cpu = inference_model(*args).numpy()

    proto = inference_model._onnx
    feeds = {i.name: a.numpy() for i, a in zip(proto.graph.input, args)}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = session.run(None, feeds)[0]
    np.testing.assert_allclose(got_cpu, reference, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(got_cpu, expected, rtol=1e-4, atol=atol)

    inference_model.save(tmp_path / "model.popef")
    with ModelRunner(tmp_path / "model.popef", "ipu-model") as runner:
        got_ipu = runner.execute(feeds)[proto.graph.output[0].name]
    np.testing.assert_allclose(got_ipu, reference, rtol=1e-4, atol=atol)


@needs_onnxscript
def test_dynamo_export_with_external_data_file(tmp_path):
    """The dynamo exporter writes the weights to ``model.onnx.data`` beside ``model.onnx``."""
    torch.manual_seed(0)
    model = torch_models.VGG().eval()
    args = image_batch()
    onnx_path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        args,
        str(onnx_path),
        dynamo=True,
        external_data=True,
        input_names=["images"],
        output_names=["logits"],
    )
    data_path = tmp_path / "model.onnx.data"
    assert data_path.exists() and data_path.stat().st_size > onnx_path.stat().st_size

    popef.import_onnx(onnx_path, tmp_path / "model.popef")
    with torch.no_grad():
        expected = model(*args).numpy()
    for executor in ("cpu", "ipu-model"):
        with ModelRunner(tmp_path / "model.popef", executor) as runner:
            got = runner.execute({"images": args[0].numpy()})["logits"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    data_path.write_bytes(data_path.read_bytes()[:100])  # truncated weights: a clear error
    with pytest.raises(popef.PopefError, match="model.onnx.data"):
        popef.import_onnx(onnx_path, tmp_path / "broken.popef")
    assert not (tmp_path / "broken.popef").exists()


def test_imported_model_exports_back_to_onnx(tmp_path):
    """No opaque ``onnx`` blob is needed: export rebuilds an equivalent model from the graph
    program, its attributes and its weights (docs/import.md §2)."""
    from popef.runtime.to_onnx import export_onnx

    torch.manual_seed(0)
    model = torch_models.GPT2().eval()
    args = token_batch()
    inference_model = popef.torch.inferenceModel(model)
    expected = inference_model(*args).numpy()
    inference_model.save(tmp_path / "gpt2.popef")
    exported = export_onnx(tmp_path / "gpt2.popef")
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    [got] = session.run(None, {"input": args[0].numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
