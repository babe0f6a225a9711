"""The Ray application's settings without Ray: builder arguments, and replicas and
autoscaling read from the models' configs."""

from __future__ import annotations

import pytest

from popef.servable.errors import ServingError
from popef.serving.ray.options import AppOptions, Scaling, scaling_of_repositories

from .conftest import config, write_model


def _repo(tmp_path, **extras):
    for name, extra in extras.items():
        write_model(tmp_path, name, config(name, extra=extra))
    return tmp_path


def test_instance_group_counts_become_replicas(tmp_path):
    repo = _repo(
        tmp_path,
        a="instance_group [ { count: 2 }, { count: 1 } ]",
        b="instance_group [ { count: 2 } ]",
    )
    scaling = scaling_of_repositories([repo])
    assert scaling == Scaling(num_replicas=3)
    assert scaling.deployment_options()["num_replicas"] == 3


def test_parameters_turn_autoscaling_on(tmp_path):
    repo = _repo(
        tmp_path,
        a=(
            'parameters [ { key: "ray_max_replicas" value: { string_value: "4" } },\n'
            '  { key: "ray_target_ongoing_requests" value: { string_value: "1.5" } } ]'
        ),
    )
    options = scaling_of_repositories([repo]).deployment_options()
    assert options["autoscaling_config"]["max_replicas"] == 4
    assert options["autoscaling_config"]["min_replicas"] == 1
    assert options["autoscaling_config"]["target_ongoing_requests"] == 1.5
    assert "num_replicas" not in options


def test_flags_override_the_configs(tmp_path):
    repo = _repo(
        tmp_path, a='parameters [ { key: "ray_max_replicas" value: { string_value: "4" } } ]'
    )
    fixed = AppOptions((str(repo),), num_replicas=2).scaling()
    assert not fixed.autoscaling and fixed.num_replicas == 2
    assert AppOptions((str(repo),), max_replicas=8).scaling().max_replicas == 8


def test_builder_arguments_are_typed_and_checked(tmp_path):
    options = AppOptions.from_args(
        {
            "model_repository": str(tmp_path),
            "num_replicas": "3",
            "num_cpus": "0.5",
            "auto_complete": "false",
            "executor_options": "a=1,b=2",
        }
    )
    assert (options.num_replicas, options.num_cpus, options.auto_complete) == (3, 0.5, False)
    assert options.executor_options == {"a": "1", "b": "2"}
    assert options.retry_lost_requests  # the retrying ingress unless asked otherwise
    off = AppOptions.from_args({"model_repository": str(tmp_path), "retry_lost_requests": "false"})
    assert not off.retry_lost_requests
    with pytest.raises(ServingError, match="retry_lost_requests"):
        AppOptions.from_args({"model_repository": str(tmp_path), "retry_lost_requests": "maybe"})
    with pytest.raises(ServingError, match="unknown argument 'replicas'"):
        AppOptions.from_args({"model_repository": str(tmp_path), "replicas": "3"})
    with pytest.raises(ServingError, match="num_replicas must be a whole number, got 'many'"):
        AppOptions.from_args({"model_repository": str(tmp_path), "num_replicas": "many"})
    with pytest.raises(ServingError, match="a model repository is needed"):
        AppOptions.from_args({})


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            'parameters [ { key: "ray_max_replicas" value: { string_value: "x" } } ]',
            'parameter ray_max_replicas must be a whole number, got "x"',
        ),
        (
            'parameters [ { key: "ray_min_replicas" value: { string_value: "5" } },\n'
            '  { key: "ray_max_replicas" value: { string_value: "2" } } ]',
            "min_replicas (5) must be at most max_replicas (2)",
        ),
        ("instance_group [ { count: 5000 } ]", "num_replicas must be a whole number in [1, 1024]"),
    ],
)
def test_bad_scaling_in_a_config_is_named(tmp_path, extra, message):
    repo = _repo(tmp_path, a=extra)
    with pytest.raises(ServingError) as info:
        scaling_of_repositories([repo])
    assert message in info.value.message


def test_a_repository_that_is_no_folder_is_named(tmp_path):
    with pytest.raises(ServingError, match="is not a folder"):
        scaling_of_repositories([tmp_path / "missing"])


def test_the_retry_flag_reaches_the_application(tmp_path, monkeypatch):
    """``popef serve --ray --ray-retry-lost-requests false`` deploys without the ingress."""
    from click.testing import CliRunner

    from popef.serving import cli as serving_cli
    from popef.serving.ray import launcher

    seen = []
    monkeypatch.setattr(launcher, "serve_on_ray", lambda server, address, **kw: seen.append(kw))
    arguments = ["--model-repository", str(tmp_path), "--ray"]
    for flag, expected in ((["--ray-retry-lost-requests", "false"], False), ([], True)):
        result = CliRunner().invoke(serving_cli.serve_command, arguments + flag)
        assert result.exit_code == 0, result.output
        assert seen.pop()["retry_lost_requests"] is expected
