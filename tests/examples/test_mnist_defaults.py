"""train.py leaves the committed model alone unless told to replace it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


def _train_module():
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    spec = importlib.util.spec_from_file_location("mnist_example_train_defaults",
                                                  EXAMPLE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_writes_elsewhere_than_the_committed_model_by_default(tmp_path, monkeypatch):
    train = _train_module()
    monkeypatch.chdir(EXAMPLE)  # even when run next to it
    output = train.parse_args([]).output
    assert output.resolve() != (EXAMPLE / "executable.popef").resolve()
    assert train.parse_args(["--output", "executable.popef"]).output.resolve() == \
        (EXAMPLE / "executable.popef").resolve()
