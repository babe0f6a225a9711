"""The Python examples of docs/runtime.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner

from .helpers import model_of, save_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def block_with(text: str) -> str:
    [found] = [b for b in blocks() if text in b]
    return found


def test_program_example():
    exec(block_with("encode_program(program)"), {})


def test_builder_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(block_with('g.save("model.popef"'), {})
    with ModelRunner("model.popef") as runner:
        [x] = runner.get_execute_inputs()
        out = runner.execute({x.name: np.zeros(x.shape, np.float32)})
    np.testing.assert_allclose(out["softmax/Softmax:0"], np.full((1, 10), 0.1), rtol=1e-6)


def test_plugin_example_is_a_working_executor():
    scope: dict = {}
    exec(block_with("class MyExecutor"), scope)
    executor = scope["MyExecutor"](device=1)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("Add", [x, g.add_weight("w", np.ones(3, np.float32))]), "y")
    with ModelRunner(model_of(save_bytes(g)), executor) as runner:
        out = runner.execute({"x": np.zeros((4, 3), np.float32)})
        assert runner.program_runs == {0: 1}
    np.testing.assert_array_equal(out["y"], np.ones((4, 3)))


def test_adding_an_op_example():
    import textwrap

    from popef.runtime.ops import OPS

    built_in = OPS.pop("HardSwish", None)  # the example registers its own HardSwish
    scope: dict = {}
    exec(textwrap.dedent(block_with("class HardSwish(Op)")), scope)
    try:
        g = GraphBuilder()
        x = g.add_input("x", DataType.F32, (1, 4))
        g.add_output(g.add_node("HardSwish", [x]), "y")
        data = np.array([[-4, -1, 1, 4]], np.float32)
        with ModelRunner(model_of(save_bytes(g))) as runner:
            out = runner.execute({"x": data})["y"]
        np.testing.assert_allclose(out, data * np.clip(data / 6 + 0.5, 0, 1), rtol=1e-6)
    finally:
        OPS.pop("HardSwish", None)
        if built_in is not None:
            OPS["HardSwish"] = built_in
