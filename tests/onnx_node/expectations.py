"""The committed expectations of the node suite: ``tests/data/onnx_node_expected.json``."""

from __future__ import annotations

import json
from pathlib import Path

EXPECTED_FILE = Path(__file__).resolve().parent.parent / "data" / "onnx_node_expected.json"
UPDATE_COMMAND = "python -m tests.onnx_node.update"


def load_expected() -> dict[str, str]:
    """case name -> "pass", "folded" or "refused: <reason>"; empty when the file is missing."""
    if not EXPECTED_FILE.exists():
        return {}
    return dict(json.loads(EXPECTED_FILE.read_text(encoding="utf-8"))["cases"])


def save_expected(cases: dict[str, str], onnx_version: str) -> None:
    body = {
        "about": "status of every case of onnx's node test suite on popef (import_onnx, then "
        f"the cpu and ipu-model executors); regenerate with `{UPDATE_COMMAND}`",
        "onnx": onnx_version,
        "cases": dict(sorted(cases.items())),
    }
    EXPECTED_FILE.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
