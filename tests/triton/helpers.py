"""Small models and model folders for the Triton tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import popef
from popef.runtime import GraphBuilder

from ..helpers import linear_softmax_reference, save_linear_softmax

WEIGHTS = np.array(
    [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, -1.0, 1.0], [2.0, 0.5, 0.5]], dtype=np.float32
)


def linear_softmax(
    path: Path,
    *,
    batch: int = 2,
    features: int = 4,
    replication_factor: int = 1,
    device_iterations: int = 1,
    input_name: str = "input",
    output_name: str = "out",
) -> Path:
    """``softmax(x @ W)``: input F32 (batch, 4), output F32 (batch, 3) (the brief's model)."""
    return save_linear_softmax(
        path,
        WEIGHTS[:features],
        batch=batch,
        input_name=input_name,
        output_name=output_name,
        replication_factor=replication_factor,
        device_iterations=device_iterations,
    )


def vector_model(path: Path) -> Path:
    """No batch dimension: input F32 (4,), output F32 (3,) — served with max_batch_size 0."""
    g = GraphBuilder()
    x = g.add_input("x", popef.DataType.F32, (4,))
    g.add_output(g.add_node("MatMul", [x, g.add_weight("w", WEIGHTS)]), "y")
    path.parent.mkdir(parents=True, exist_ok=True)
    g.save(path, executable_name="v")
    return path


def reference(x: np.ndarray) -> np.ndarray:
    return linear_softmax_reference(x, WEIGHTS)


def model_folder(
    repository: Path,
    name: str,
    *,
    config: str | None = None,
    name_map: dict | None = None,
    version: str = "1",
    filename: str = "executable.popef",
    **model,
) -> Path:
    """``<repository>/<name>/<version>/<filename>`` (+ config.pbtxt, name_map.json)."""
    folder = repository / name
    linear_softmax(folder / version / filename, **model)
    if config is not None:
        (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    if name_map is not None:
        (folder / version / "name_map.json").write_text(json.dumps(name_map), encoding="utf-8")
    return folder
