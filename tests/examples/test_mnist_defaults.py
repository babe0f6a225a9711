"""train.py leaves the committed model alone unless told to replace it."""

from __future__ import annotations

import sys

from tests.examples import EXAMPLE, load_example


def _train_module():
    return load_example("mnist_example_train_defaults", "train.py")


def test_training_writes_elsewhere_than_the_committed_model_by_default(tmp_path, monkeypatch):
    train = _train_module()
    monkeypatch.chdir(EXAMPLE)  # even when run next to it
    output = train.parse_args([]).output
    assert output.resolve() != (EXAMPLE / "executable.popef").resolve()
    assert (
        train.parse_args(["--output", "executable.popef"]).output.resolve()
        == (EXAMPLE / "executable.popef").resolve()
    )


def test_loading_the_example_leaves_sys_path_alone():
    # its triton/ folder would shadow the triton package that torch's exporter imports
    before = list(sys.path)
    load_example("mnist_example_train_path_check", "train.py")
    assert sys.path == before and str(EXAMPLE) not in sys.path
