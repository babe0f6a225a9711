"""The served descriptors are built on the runtime's: ModelTensor on TensorDesc, TensorPlan on
ModelTensor."""

from __future__ import annotations

from popef.runtime import ModelRunner
from popef.servable import build_plan, complete_config, signature_of

from .conftest import build_tiny


def test_served_descriptors_build_on_the_runtimes(tmp_path):
    path = tmp_path / "executable.popef"
    build_tiny(path, micro_batch=2, replicas=2)
    with ModelRunner(str(path)) as runner:
        signature = signature_of(runner, {"input": "x"})
        config = complete_config(None, "tiny", signature, states_max_batch_size=False)
        plan = build_plan(config, signature)
        descs = [*runner.get_execute_inputs(), *runner.get_execute_outputs()]
    tensors = [*signature.inputs, *signature.outputs]
    assert [t.desc for t in tensors] == descs
    x = signature.inputs[0]
    assert (x.key, x.served_name, x.runtime_name) == ("input", "x", "input")
    assert (x.dtype, x.shape, x.per_replica) == (descs[0].dtype, descs[0].shape, True)
    assert [tp.tensor for tp in (*plan.inputs, *plan.outputs)] == tensors
    tp = plan.input("x")
    assert (tp.name, tp.runtime_name, tp.key, tp.per_replica) == ("x", "input", "input", True)
    assert tp.model_shape == (4,) and tp.dims == (4,) and tp.ttype.name == "FP32"
