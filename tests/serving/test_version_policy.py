"""``version_policy { specific }``: bounded, no negative versions, missing folders logged once
and never listed by the repository index."""

from __future__ import annotations

import json
import logging

import pytest

from popef.servable import MAX_SPECIFIC_VERSIONS
from popef.servable.errors import ServingError
from popef.serving import InferenceCore, ModelRepository

from .conftest import LogCapture, config, write_model


def _specific(versions) -> str:
    return f"version_policy {{ specific {{ versions: [ {', '.join(map(str, versions))} ] }} }}"


def _load_config(versions) -> str:
    return json.dumps(
        {
            "name": "m",
            "backend": "poplar",
            "max_batch_size": 8,
            "version_policy": {"specific": {"versions": list(versions)}},
        }
    )


@pytest.fixture
def explicit_core(tmp_path):
    write_model(tmp_path, "m", config("m"), versions=(1, 2))
    core = InferenceCore(ModelRepository(tmp_path), model_control_mode="explicit")
    core.start(["m"])
    yield core
    core.close()


@pytest.fixture
def captured_log():
    handler = LogCapture()
    logger = logging.getLogger("popef.serving")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_load_refuses_negative_versions(explicit_core):
    with pytest.raises(ServingError, match=r"lists version -3: expected versions >= 0") as info:
        explicit_core.load_model("m", {"config": _load_config([1, -3, -2])})
    assert info.value.status.http_status == 500  # Triton: INTERNAL, "failed to poll"
    assert explicit_core.model_ready("m", "2")  # the loaded versions keep serving


def test_load_refuses_too_many_versions(explicit_core):
    versions = [1] + list(range(10, 10 + MAX_SPECIFIC_VERSIONS))
    with pytest.raises(
        ServingError,
        match=f"lists {len(versions)} versions, over the limit of {MAX_SPECIFIC_VERSIONS}",
    ) as info:
        explicit_core.load_model("m", {"config": _load_config(versions)})
    assert info.value.status.http_status == 500  # Triton: INTERNAL, "failed to poll"


def test_negative_version_on_disk_is_a_reason(tmp_path):
    write_model(tmp_path, "m", config("m", extra=_specific([1, -1])))
    repo = ModelRepository(tmp_path)
    repo.load_all()
    try:
        (entry,) = repo.index()
        assert entry["state"] == "UNAVAILABLE"
        assert "lists version -1: expected versions >= 0" in entry["reason"]
    finally:
        repo.close()


def test_missing_versions_are_logged_once_and_not_indexed(explicit_core, captured_log):
    missing = list(range(3, 3 + MAX_SPECIFIC_VERSIONS - 1))
    explicit_core.load_model("m", {"config": _load_config([1, *missing])})
    assert explicit_core.model_ready("m", "1") and not explicit_core.model_ready("m", "2")
    index = explicit_core.repository_index()
    assert [(e["name"], e["version"], e["state"]) for e in index] == [("m", "1", "READY")]
    lines = [line for line in captured_log.records if "no folder" in line]
    expected = (
        f"model 'm': version_policy specific names versions 3, 4, 5, 6, 7 "
        f"\u2026 ({len(missing) - 5} more), which have no folder; they are not served"
    )
    assert lines == [expected]
    assert explicit_core.ready()  # like Triton: the versions that have a folder serve


def test_load_naming_only_missing_versions_is_refused(explicit_core):
    with pytest.raises(
        ServingError,
        match=r"names versions 7, 9, but 'm' has no such folder "
        r"\(it has folders 1, 2\)",
    ) as info:
        explicit_core.load_model("m", {"config": _load_config([9, 7, 9])})
    assert info.value.status.http_status == 500  # Triton: INTERNAL, "failed to poll"


def test_only_missing_versions_on_disk(tmp_path):
    write_model(tmp_path, "m", config("m", extra=_specific([5])))
    repo = ModelRepository(tmp_path)
    repo.load_all()
    try:
        assert repo.index() == [
            {
                "name": "m",
                "version": "",
                "state": "UNAVAILABLE",
                "reason": "version_policy specific names version 5, but 'm' "
                "has no such folder (it has folder 1)",
            }
        ]
    finally:
        repo.close()
