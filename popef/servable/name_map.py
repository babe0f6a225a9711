"""``name_map.json``: PopEF anchor name → served tensor name, and Graphcore's anchor keys.

The second anchor of a repeated name is ``name/1``, the third ``name/2``, as in Graphcore's
Poplar backend (:func:`anchor_keys`); ``name_map.json`` renames anchors by these keys.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from ..escaping import shorten
from .errors import ConfigError
from .folder_files import read_model_file, regular_file

__all__ = [
    "MAX_NAME_MAP_BYTES",
    "NAME_MAP_FILENAME",
    "anchor_keys",
    "check_name_map_file",
    "read_name_map",
]

NAME_MAP_FILENAME = "name_map.json"
#: the largest name_map.json read
MAX_NAME_MAP_BYTES = 1 << 20


def read_name_map(path: Path) -> dict[str, str]:
    """``name_map.json``: a JSON object of PopEF anchor name → served tensor name, in a
    regular file of at most :data:`MAX_NAME_MAP_BYTES` (:func:`read_model_file`)."""
    text = read_model_file(path, path.name, MAX_NAME_MAP_BYTES)
    if text is None:
        raise ConfigError(f"{path.name} does not exist")
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{path.name} is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path.name} must be a JSON object of anchor name to tensor name, "
            f"got a {type(data).__name__}"
        )
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{path.name}: the name for anchor '{shorten(key)}' must be a "
                f"non-empty string, got {shorten(json.dumps(value))}"
            )
    return dict(data)


def anchor_keys(names: Iterable[str]) -> list[str]:
    """Graphcore's keys for anchor names: a repeated name gets ``/1``, ``/2``, … suffixes."""
    seen: Counter[str] = Counter()
    keys = []
    for name in names:
        keys.append(name if not seen[name] else f"{name}/{seen[name]}")
        seen[name] += 1
    return keys


def check_name_map_file(directory: Path) -> dict[str, str] | None:
    """The version folder's ``name_map.json``, or ``None`` when it has none."""
    path = directory / NAME_MAP_FILENAME
    return read_name_map(path) if regular_file(path, NAME_MAP_FILENAME) is not None else None
