"""Nothing outside a model's folder is read: every file a config names resolves inside it
(symlinks followed), load and unload requests name folders of the repository only, version
folders follow Triton's naming rule and instance groups are bounded."""

from __future__ import annotations

import http.client
import json
import os
import threading
from pathlib import Path

import pytest
from tritonclient.utils import InferenceServerException

from popef.servable import (
    MAX_CONFIG_BYTES,
    MAX_INSTANCES,
    MAX_LABEL_FILE_BYTES,
    MAX_NAME_MAP_BYTES,
    ConfigError,
    inside,
)
from popef.servable.errors import ServingError, Status
from popef.serving import InferenceCore, ModelRepository, RepositoryOptions

from .conftest import build_tiny, config, local_server, write_model

SECRET = "top secret line\n"


def labelled(name: str, label_filename: str) -> str:
    """A config of the tiny model whose output names ``label_filename``."""
    return config(name).replace(
        "dims: [ 3 ] }", f"dims: [ 3 ] label_filename: {json.dumps(label_filename)} }}"
    )


def load(repo: Path, name: str, **options):
    repository = ModelRepository(repo, RepositoryOptions(**options))
    record = repository.load(name, raise_on_error=False)
    return repository, record


@pytest.fixture()
def outside(tmp_path) -> Path:
    """A file beside the repository, which no model may read."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    return secret


@pytest.fixture()
def repo(tmp_path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


# -- the helper -------------------------------------------------------------------------------


def test_inside_accepts_files_in_the_model_folder_and_refuses_the_rest(tmp_path, outside):
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "labels.txt").write_text("a\n")
    (model / "link.txt").symlink_to("sub/labels.txt")
    (model / "out.txt").symlink_to(outside)
    assert inside(model, "sub/labels.txt", "x") == (model / "sub" / "labels.txt").resolve()
    assert inside(model, "link.txt", "x") == (model / "sub" / "labels.txt").resolve()
    assert inside(model, "sub/../sub/labels.txt", "x").name == "labels.txt"
    for name, why in [
        ("../secret.txt", "is outside the model folder 'm'"),
        ("out.txt", "is outside the model folder 'm' (symlinks followed)"),
        ("sub/../../secret.txt", "is outside"),
        (".", "is outside"),
        (str(outside), "is an absolute path"),
        ("/etc/passwd", "is an absolute path"),
        ("a\0b", "is not a file name"),
        ("", "is not a file name"),
    ]:
        with pytest.raises(
            ConfigError, match="label_filename 'q' " + why.replace("(", r"\(").replace(")", r"\)")
        ):
            inside(model, name, "label_filename 'q'")


def test_a_model_folder_that_is_a_symlink_reads_its_own_files(tmp_path, repo):
    real = tmp_path / "elsewhere" / "real"
    write_model(real.parent, "real", labelled("m", "labels/classes.txt"))
    (real / "labels").mkdir()
    (real / "labels" / "classes.txt").write_text("a\nb\nc\n")
    (repo / "m").symlink_to(real, target_is_directory=True)
    repository, record = load(repo, "m")
    try:
        assert record.state == "READY", record.reason
        served = repository.get("m")
        assert served.plan.outputs[0].labels == ("a", "b", "c")
    finally:
        repository.close()


# -- label_filename ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["../../../../../../../../etc/passwd", "../../secret.txt", "ABSOLUTE", "escape.txt"]
)
def test_a_label_file_outside_the_model_folder_is_never_read(repo, outside, label):
    if label == "ABSOLUTE":
        label = str(outside)
    write_model(repo, "m", labelled("m", label))
    (repo / "m" / "escape.txt").symlink_to(outside)
    repository, record = load(repo, "m")
    try:
        assert record.state == "UNAVAILABLE"
        assert f"label_filename '{label}' is" in record.reason
        assert "absolute path" in record.reason or "outside the model folder 'm'" in record.reason
        assert "secret" not in record.reason.replace("secret.txt", "")
    finally:
        repository.close()


def test_a_label_file_that_is_a_fifo_or_too_big_is_refused(repo):
    write_model(repo, "fifo", labelled("fifo", "labels.fifo"))
    os.mkfifo(repo / "fifo" / "labels.fifo")
    write_model(repo, "big", labelled("big", "labels.txt"))
    (repo / "big" / "labels.txt").write_text("x" * (MAX_LABEL_FILE_BYTES + 1))
    repository = ModelRepository(repo)
    # a FIFO is never opened: the load must finish rather than wait for a writer
    loader = threading.Thread(target=repository.load_all, daemon=True)
    loader.start()
    loader.join(120)
    if loader.is_alive():  # (closing would wait for the hung load)
        pytest.fail("loading a model whose label file is a FIFO hung")
    try:
        reasons = {r.name: r.reason for r in repository.records()}
        assert "label_filename 'labels.fifo' is not a regular file" in reasons["fifo"]
        assert (
            f"label_filename 'labels.txt' is {MAX_LABEL_FILE_BYTES + 1} bytes, over the "
            f"limit of {MAX_LABEL_FILE_BYTES}"
        ) in reasons["big"]
    finally:
        repository.close()


# -- default_model_filename and the layout's own files ----------------------------------------


def test_default_model_filename_must_resolve_inside_the_model_folder(repo, tmp_path):
    build_tiny(tmp_path / "outside.popef")
    write_model(
        repo, "m", config("m", extra='default_model_filename: "linked.popef"'), versions=(1, 2)
    )
    (repo / "m" / "1" / "linked.popef").symlink_to(tmp_path / "outside.popef")
    (repo / "m" / "2" / "linked.popef").symlink_to("../1/executable.popef")
    repository, record = load(repo, "m", auto_complete=True)
    try:
        assert record.versions[2].state == "READY", record.versions[2].reason
    finally:
        repository.close()
    override = config(
        "m",
        extra='default_model_filename: "linked.popef"\n'
        "version_policy { specific { versions: [ 1 ] } }",
    )
    (repo / "m" / "config.pbtxt").write_text(override)
    repository, record = load(repo, "m")
    try:
        assert record.state == "UNAVAILABLE"
        assert (
            "default_model_filename 'linked.popef' is outside the model folder 'm'"
            in record.versions[1].reason
        )
    finally:
        repository.close()


def test_the_layouts_own_file_names_follow_the_operators_symlinks(repo, tmp_path):
    """executable.popef is no config's choice: the example's is a symlink to the committed
    model, outside the model folder, and that keeps working."""
    build_tiny(tmp_path / "committed.popef")
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "executable.popef").symlink_to(tmp_path / "committed.popef")
    repository, record = load(repo, "m")
    try:
        assert record.state == "READY", record.reason
    finally:
        repository.close()


def test_the_model_config_name_stays_in_configs(repo, outside):
    write_model(repo, "m", config("m"))
    (repo / "m" / "configs").mkdir()
    (repo / "m" / "configs" / "small.pbtxt").write_text(config("m", max_batch_size=2))
    (repo / "m" / "configs" / "out.pbtxt").symlink_to(outside)
    repository, record = load(repo, "m", config_name="small")
    try:
        assert record.state == "READY" and record.config.max_batch_size == 2
    finally:
        repository.close()
    for name, why in [
        ("../../secret", "must be a file name in configs/"),
        ("out", "model config name 'out' is outside the model folder 'm'"),
    ]:
        repository, record = load(repo, "m", config_name=name)
        try:
            assert record.state == "UNAVAILABLE" and why in record.reason, record.reason
        finally:
            repository.close()


def test_the_triton_backend_applies_the_same_rule(repo, tmp_path):
    from popef.servable import parse_config
    from popef.triton.backend import model_files

    build_tiny(tmp_path / "outside.popef")
    write_model(repo, "m", None)
    (repo / "m" / "1" / "linked.popef").symlink_to(tmp_path / "outside.popef")
    with pytest.raises(ConfigError, match="default_model_filename 'linked.popef' is outside"):
        model_files(repo / "m" / "1", parse_config('default_model_filename: "linked.popef"'))


# -- load and unload requests -----------------------------------------------------------------

BAD_NAMES = ["../models", "..", ".", "/etc", "a/b", "a\\b", "a\0b", ".hidden", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_load_and_unload_names_are_folder_names(repo, name):
    write_model(repo, "m", config("m"))
    core = InferenceCore(ModelRepository(repo), model_control_mode="explicit")
    try:
        for call in (core.load_model, core.unload_model):
            with pytest.raises(ServingError) as info:
                call(name)
            assert info.value.status is Status.INVALID_ARG
            assert "is not a model of the repository" in info.value.message
    finally:
        core.close()


@pytest.fixture(scope="module")
def explicit_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("confined")
    (root / "secret.txt").write_text(SECRET)
    repo = root / "models"
    write_model(repo, "m", config("m", output_name="out"))
    with local_server(
        [repo], allow_metrics=False, model_control_mode="explicit", load_models=["m"]
    ) as srv:
        yield srv


def _escaping_config() -> str:
    return json.dumps(
        {
            "name": "m",
            "backend": "poplar",
            "max_batch_size": 8,
            "output": [
                {
                    "name": "out",
                    "data_type": "TYPE_FP32",
                    "dims": [3],
                    "label_filename": "../../secret.txt",
                }
            ],
        }
    )


def test_a_load_request_with_a_config_naming_an_outside_file_gets_400(explicit_server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(explicit_server.url("http"))
    grpc = grpcclient.InferenceServerClient(explicit_server.url("grpc"))
    try:
        with pytest.raises(InferenceServerException) as info:
            http.load_model("m", config=_escaping_config())
        assert info.value.status() == "400"
        assert "label_filename '../../secret.txt' is outside the model folder 'm'" in str(
            info.value
        )
        with pytest.raises(InferenceServerException) as info:
            grpc.load_model("m", config=_escaping_config())
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "is outside the model folder 'm'" in info.value.message()
        assert "top secret" not in info.value.message()
        # the loaded version keeps serving, with no label read
        assert grpc.is_model_ready("m")
        assert http.get_model_config("m")["output"][0]["label_filename"] == ""
    finally:
        http.close()
        grpc.close()


def test_load_requests_naming_no_folder_of_the_repository_get_400(explicit_server):
    import tritonclient.grpc as grpcclient

    grpc = grpcclient.InferenceServerClient(explicit_server.url("grpc"))
    try:
        for name in ("../models", "/etc", "..", "a\\b"):
            for call in (grpc.load_model, grpc.unload_model):
                with pytest.raises(InferenceServerException) as info:
                    call(name)
                assert info.value.status() == "StatusCode.INVALID_ARGUMENT", name
        assert grpc.is_model_ready("m")
    finally:
        grpc.close()
    host, port = explicit_server.url("http").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/v2/repository/models/a%5Cb/load", body=b"{}")
        response = connection.getresponse()
        assert response.status == 400
        assert b"is not a model of the repository" in response.read()
    finally:
        connection.close()


def test_huge_names_in_a_load_request_are_shortened_in_the_answer(explicit_server):
    import tritonclient.http as httpclient

    huge = "x" * 2_000_000
    label = json.loads(_escaping_config())
    label["output"][0]["label_filename"] = huge
    name = json.loads(_escaping_config())
    name["output"][0]["name"] = huge
    http = httpclient.InferenceServerClient(explicit_server.url("http"), network_timeout=120)
    try:
        for config_json, what in [(label, "label_filename"), (name, "output")]:
            with pytest.raises(InferenceServerException) as info:
                http.load_model("m", config=json.dumps(config_json))
            assert info.value.status() == "400"
            message = str(info.value)
            assert f"{what} '{'x' * 200}\u2026(1999800 more characters)'" in message
            assert len(message) < 2000
        assert http.is_model_ready("m")
    finally:
        http.close()


# -- files of the model folder: regular files of bounded size ----------------------------------


def _gone(path: Path) -> Path:
    path.unlink(missing_ok=True)
    return path


def _fifo(path: Path) -> None:
    os.mkfifo(_gone(path))


def _big(path: Path, limit: int) -> None:
    path.write_text(path.read_text() + " " * limit)


FOLDER_FILES = {
    "config FIFO": (
        lambda m: _fifo(m / "config.pbtxt"),
        "config.pbtxt is not a regular file: found a FIFO",
    ),
    "config folder": (
        lambda m: _gone(m / "config.pbtxt").mkdir(),
        "config.pbtxt is not a regular file: found a folder",
    ),
    "config broken symlink": (
        lambda m: _gone(m / "config.pbtxt").symlink_to(m / "missing"),
        "config.pbtxt is a symlink to a missing file",
    ),
    "config too big": (
        lambda m: _big(m / "config.pbtxt", MAX_CONFIG_BYTES),
        f"over the limit of {MAX_CONFIG_BYTES}",
    ),
    "named config FIFO": (
        lambda m: ((m / "configs").mkdir(), _fifo(m / "configs" / "c.pbtxt")),
        "configs/c.pbtxt is not a regular file: found a FIFO",
    ),
    "name map device": (
        lambda m: _gone(m / "1" / "name_map.json").symlink_to("/dev/zero"),
        "name_map.json is not a regular file: found a character device",
    ),
    "name map FIFO": (
        lambda m: _fifo(m / "1" / "name_map.json"),
        "name_map.json is not a regular file: found a FIFO",
    ),
    "name map too big": (
        lambda m: _big(m / "1" / "name_map.json", MAX_NAME_MAP_BYTES),
        f"over the limit of {MAX_NAME_MAP_BYTES}",
    ),
    "executable FIFO": (
        lambda m: _fifo(m / "1" / "executable.popef"),
        "'1/executable.popef' is not a regular file: found a FIFO",
    ),
    "other popef broken symlink": (
        lambda m: (m / "1" / "b.popef").symlink_to(m / "missing"),
        "'1/b.popef' is a symlink to a missing file",
    ),
    "missing label file": (
        lambda m: (m / "config.pbtxt").write_text(labelled("m", "l.txt")),
        "label_filename 'l.txt' does not exist in the model folder 'm'",
    ),
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("case", FOLDER_FILES)
def test_a_folder_file_that_is_not_a_small_regular_file_makes_the_model_unavailable(repo, case):
    """Never treated as absent (a FIFO config.pbtxt once came up READY with a completed config
    the operator never wrote), never opened when not a regular file, never read past a limit."""
    setup, reason = FOLDER_FILES[case]
    write_model(repo, "m", config("m"), name_map={})
    if case == "other popef broken symlink":
        (repo / "m" / "1" / "executable.popef").rename(repo / "m" / "1" / "a.popef")
    setup(repo / "m")
    repository = ModelRepository(repo, RepositoryOptions(config_name="c"))
    loader = threading.Thread(target=repository.load_all, daemon=True)
    loader.start()
    loader.join(120)
    if loader.is_alive():  # (closing would wait for the hung load)
        pytest.fail(f"loading a model with a {case} hung")
    try:
        record = repository.record("m")
        assert record.state == "UNAVAILABLE"
        reasons = [record.reason, *(v.reason for v in record.versions.values())]
        assert any(reason in r for r in reasons), reasons
    finally:
        repository.close()


def test_a_symlink_to_a_regular_file_is_read(repo, tmp_path):
    """The operator's symlinks to regular files keep working (the example's executable.popef
    is one); the files a config names must still stay inside the model folder."""
    write_model(repo, "m", None)
    (tmp_path / "config.txt").write_text(config("m", max_batch_size=2, output_name="scores"))
    (repo / "m" / "config.pbtxt").symlink_to(tmp_path / "config.txt")
    (tmp_path / "map.json").write_text(json.dumps({"out": "scores"}))
    (repo / "m" / "1" / "name_map.json").symlink_to(tmp_path / "map.json")
    repository, record = load(repo, "m")
    try:
        assert record.state == "READY", record.reason
        assert record.config.max_batch_size == 2
        assert [t.name for t in record.ready_versions()[0].served.plan.outputs] == ["scores"]
    finally:
        repository.close()


# -- version folders (Triton's rule) ----------------------------------------------------------


def test_a_version_folder_with_leading_zeros_is_ignored_and_named_as_it_is(repo, serving_log):
    write_model(repo, "m", None, versions=(7,))
    (repo / "m" / "7").rename(repo / "m" / "007")
    repository, record = load(repo, "m")
    try:
        assert record.state == "UNAVAILABLE"
        assert "'7'" not in record.reason
        assert (
            "'007' is not one: a version folder's name is a number without leading zeros"
            in record.reason
        )
        assert "ignoring folder '007'" in serving_log.text
    finally:
        repository.close()
    write_model(repo, "m", None, versions=(1,))
    repository, record = load(repo, "m")
    try:
        assert record.state == "READY" and sorted(record.versions) == [1]
    finally:
        repository.close()


# -- instance groups ----------------------------------------------------------------------------


def test_instance_groups_are_capped(repo):
    write_model(
        repo,
        "m",
        config(
            "m",
            extra=(
                f"instance_group [ {{ kind: KIND_CPU count: {MAX_INSTANCES - 1} }}, "
                "{ kind: KIND_CPU count: 2 } ]"
            ),
        ),
    )
    before = threading.active_count()
    repository, record = load(repo, "m")
    try:
        assert record.state == "UNAVAILABLE"
        assert (
            f"instance_group asks for {MAX_INSTANCES + 1} instances, over the limit of "
            f"{MAX_INSTANCES} per model"
        ) in record.reason
        assert threading.active_count() <= before + 2
    finally:
        repository.close()
