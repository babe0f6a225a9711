"""The pieces ``popef serve`` and the Triton backend share: version files, batches, checks."""

from __future__ import annotations

import numpy as np
import pytest

from popef import ExecutionError
from popef.servable import (
    ConfigError,
    build_plan,
    complete_config,
    parse_config,
)
from popef.servable.batches import collect_outputs, merge_rows, prepare_feed, split_rows
from popef.servable.errors import ServingError, error_message
from popef.servable.validation import (
    batch_size,
    check_datatype,
    check_input_names,
    check_shape,
    select_outputs,
)
from popef.servable.version_folder import model_files, open_model

from .conftest import build_tiny, config


def _plan(signature, text: str | None = None, name: str = "tiny"):
    completed = complete_config(
        parse_config(text) if text else None, name, signature, states_max_batch_size=bool(text)
    )
    return build_plan(completed, signature)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """micro batch 2 × 2 replicas (per-replica anchors) × 3 device iterations."""
    vdir = tmp_path_factory.mktemp("micro") / "1"
    model = build_tiny(vdir / "executable.popef", micro_batch=2, replicas=2, device_iterations=3)
    runner, signature = open_model(vdir, model_files(vdir), "cpu")
    with runner:
        yield model, runner, signature


# -- version files ---------------------------------------------------------------------------


def test_model_files_rule(tmp_path):
    vdir = tmp_path / "1"
    build_tiny(vdir / "b.popef")
    build_tiny(vdir / "a.popef")
    assert model_files(vdir) == [vdir / "a.popef", vdir / "b.popef"]  # every *.popef, sorted
    build_tiny(vdir / "executable.popef")
    assert model_files(vdir) == [vdir / "executable.popef"]
    assert model_files(vdir, "b.popef") == [vdir / "b.popef"]
    with pytest.raises(ConfigError, match="version folder '1' has no 'model.py' "):
        model_files(vdir, "model.py")  # popef serve passes over no name
    with pytest.raises(ConfigError, match="must be a file name in the version folder"):
        model_files(vdir, "../executable.popef")
    (tmp_path / "2").mkdir()
    with pytest.raises(ConfigError, match=r"version folder '2' has no executable.popef \(nor any"):
        model_files(tmp_path / "2")


def test_open_model_renames_by_the_name_map(tmp_path):
    vdir = tmp_path / "1"
    build_tiny(vdir / "executable.popef")
    (vdir / "name_map.json").write_text('{"input": "features"}')
    runner, signature = open_model(vdir, model_files(vdir), "cpu")
    with runner:
        assert [t.served_name for t in signature.inputs] == ["features"]
    (vdir / "name_map.json").write_text('{"nope": "x"}')
    with pytest.raises(ConfigError, match="renames 'nope'"):
        open_model(vdir, model_files(vdir), "cpu")


@pytest.mark.parametrize("key", ["source", "executor", "executable", "verify", "limits"])
def test_open_model_keeps_runner_arguments_out_of_the_executor_options(tmp_path, key):
    """An executor option named like a ModelRunner argument used to reach that argument (a
    TypeError, another executable of the files, the checksum switch)."""
    vdir = tmp_path / "1"
    build_tiny(vdir / "executable.popef")
    with pytest.raises(ExecutionError, match=f"executor 'cpu' has no option '{key}'"):
        open_model(vdir, model_files(vdir), "cpu", {key: "x"})


def test_error_message():
    assert error_message(ServingError("bad")) == "bad"
    assert error_message(ConfigError("wrong")) == "wrong"
    assert error_message(ValueError("odd")) == "ValueError: odd"


# -- batches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 3, 4, 12])
def test_prepare_feed_pads_to_whole_steps_and_collect_cuts_back(micro, rows):
    model, runner, signature = micro
    plan = _plan(signature, name="micro")
    assert plan.step_rows == 4 and plan.max_batch_size == 12
    x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
    feed = prepare_feed(plan, {"input": x}, rows)
    steps = -(-rows // 4)
    assert feed["input"].shape == (steps * 2, 2, 4)  # steps × replicas, micro batch, features
    np.testing.assert_array_equal(feed["input"].reshape(-1, 4)[rows:], 0)  # zero padding
    out = collect_outputs(plan, runner.execute(feed), rows)
    assert out["out"].shape == (rows, 3)
    np.testing.assert_allclose(out["out"], model.reference(x), rtol=1e-5, atol=1e-6)


def test_merge_and_split_rows_round_trip():
    a = {"x": np.arange(2 * 3).reshape(2, 3), "y": np.arange(2)}
    b = {"x": np.arange(3 * 3).reshape(3, 3) + 100, "y": np.arange(3) + 100}
    merged = merge_rows([a, b])
    assert merged["x"].shape == (5, 3) and list(merged["y"]) == [0, 1, 100, 101, 102]
    back = split_rows(merged, [2, 3])
    for original, result in zip((a, b), back):
        for name in original:
            np.testing.assert_array_equal(result[name], original[name])
    assert merge_rows([a]) == a and split_rows(a, [2]) == [a]


# -- request checks --------------------------------------------------------------------------


def test_request_checks(micro):
    _, _, signature = micro
    plan = _plan(signature, config("micro", max_batch_size=12), name="micro")
    tp = plan.input("input")
    check_input_names("micro", plan, ["input"])
    for names, message in (
        (["input", "input"], "input 'input' is given twice"),
        (["nope"], ("unexpected inference input 'nope' for model 'micro'; its inputs are 'input'")),
        ([], "expected 1 inputs but got 0 inputs for model 'micro': missing input 'input'"),
    ):
        with pytest.raises(ServingError, match=message):
            check_input_names("micro", plan, names)
    check_datatype("micro", tp, "FP32")
    with pytest.raises(ServingError, match="data-type is 'INT8', but model 'micro' expects"):
        check_datatype("micro", tp, "INT8")
    check_shape("micro", plan, tp, (5, 4))
    with pytest.raises(ServingError, match=r"expected \[-1, 4\], got \[4\]"):
        check_shape("micro", plan, tp, (4,))
    assert batch_size("micro", [("a", (5, 4)), ("b", ()), ("c", (5,))]) == 5
    assert batch_size("micro", []) == 1
    with pytest.raises(ServingError, match="'a' has 5 and 'c' has 6 for model 'micro'"):
        batch_size("micro", [("a", (5, 4)), ("c", (6,))])
    assert select_outputs("micro", plan, ["out"]) == [plan.output("out")]
    with pytest.raises(ServingError, match="unexpected inference output 'nope'"):
        select_outputs("micro", plan, ["nope"])
    with pytest.raises(ServingError, match="output 'out' is requested twice"):
        select_outputs("micro", plan, ["out", "out"])


def test_names_a_client_sent_are_escaped_in_messages(micro):
    _, _, signature = micro
    plan = _plan(signature, config("micro", max_batch_size=12), name="micro")
    hostile = "x\x1b[2J\r\n\u202e" + "y" * 500
    checks = [
        lambda: check_input_names("micro", plan, [hostile]),
        lambda: check_input_names("micro", plan, ["input", "input\x07", "input\x07"]),
        lambda: check_datatype("micro", plan.input("input"), hostile),
        lambda: batch_size("micro", [(hostile, (5, 4)), (hostile, (6,))]),
        lambda: select_outputs("micro", plan, [hostile]),
    ]
    for check in checks:
        with pytest.raises(ServingError) as caught:
            check()
        message = str(caught.value)
        assert message.isprintable() and "y" * 201 not in message, message
        assert "\\x1b" in message or "\\x07" in message, message


def test_quotes_and_backslashes_a_client_sent_cannot_forge_the_quoting(micro):
    _, _, signature = micro
    plan = _plan(signature, config("micro", max_batch_size=12), name="micro")
    forged = "y' for model 'other"  # would read as input 'y' of a model 'other'
    with pytest.raises(ServingError) as caught:
        check_input_names("micro", plan, [forged])
    assert str(caught.value).startswith(
        "unexpected inference input 'y\\' for model \\'other' for model 'micro'"
    )
    # a backslash the client typed reads apart from an escaped control character
    with pytest.raises(ServingError) as typed:
        select_outputs("micro", plan, ["a\\x07"])
    with pytest.raises(ServingError) as control:
        select_outputs("micro", plan, ["a\x07"])
    assert "'a\\\\x07'" in str(typed.value) and "'a\\x07'" in str(control.value)
    assert str(typed.value) != str(control.value)


def test_one_batch_size_check_for_both_front_ends(micro):
    """popef serve and the Triton backend both call request_rows: one message each way."""
    from popef.servable.validation import request_rows

    _, _, signature = micro
    plan = _plan(signature, name="micro")
    assert request_rows("micro", plan, [("input", (3, 4))]) == 3
    with pytest.raises(
        ServingError,
        match=r"^inference request batch-size must be <= 12 for "
        r"'micro', got 13$",
    ):
        request_rows("micro", plan, [("input", (13, 4))])
    with pytest.raises(
        ServingError,
        match=r"^inference request batch-size must be >= 1 for "
        r"'micro', got 0$",
    ):
        request_rows("micro", plan, [("input", (0, 4))])


@pytest.mark.parametrize(
    "text, states",
    [
        ("max_batch_size: 0", True),
        ('name: "m"\nmax_batch_size:8', True),
        ('# max_batch_size: 4\nname: "m"', False),
        ('name: "max_batch_size: 4"', False),  # inside a string
        ('dynamic_batching { } input [ { name: "max_batch_size" } ]', False),
        ('name: "unterminated', False),  # parse_config reports it
        ("", False),
    ],
)
def test_states_max_batch_size_reads_tokens_not_text(text, states):
    from popef.servable import states_max_batch_size

    assert states_max_batch_size(text) is states


def test_the_triton_backend_does_not_import_serving():
    import subprocess
    import sys

    code = (
        "import sys, popef.triton.backend; "
        "print([m for m in sys.modules if m.startswith('popef.serving')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
