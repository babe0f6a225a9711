"""Model configuration: parsing, name maps, auto-complete and the checks against the file."""

from __future__ import annotations

import json

import pytest

from popef.runtime import ModelRunner
from popef.servable import (
    ConfigError,
    anchor_keys,
    build_plan,
    complete_config,
    config_to_dict,
    config_to_text,
    generate_config,
    parse_config,
    read_name_map,
    signature_of,
    states_max_batch_size,
)

from .conftest import build_tiny, config

BLOG_CONFIG = """
name: "mnist"
backend: "poplar"
max_batch_size: 1
input [ { name: "digit_image" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]
output [ { name: "output_labels" data_type: TYPE_FP32 dims: [ 10 ] } ]
parameters [
  { key: "synchronous_execution" value: { string_value: "1" } },
  { key: "timeout_ns" value: { string_value: "500000" } }
]
instance_group [{ kind: KIND_CPU }]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "executable.popef"
    build_tiny(path)
    with ModelRunner(str(path)) as runner:
        yield runner


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "executable.popef"
    build_tiny(path, micro_batch=2, replicas=2, device_iterations=3)
    with ModelRunner(str(path)) as runner:
        yield runner


def plan_for(text: str | None, runner, name: str = "tiny", name_map=None, **options):
    cfg = parse_config(text) if text is not None else None
    sig = signature_of(runner, name_map)
    completed = complete_config(
        cfg, name, sig, states_max_batch_size=bool(text and states_max_batch_size(text)), **options
    )
    return build_plan(completed, sig)


def test_blog_config_parses_into_tritonclients_model_config():
    from tritonclient.grpc import model_config_pb2

    cfg = parse_config(BLOG_CONFIG)
    assert isinstance(cfg, model_config_pb2.ModelConfig)
    assert cfg.backend == "poplar" and cfg.max_batch_size == 1
    assert list(cfg.input[0].dims) == [1, 28, 28]
    assert cfg.parameters["timeout_ns"].string_value == "500000"
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_syntax_errors_name_the_line():
    with pytest.raises(ConfigError, match=r"config.pbtxt: 3:1 .*bogus_field"):
        parse_config('name: "m"\nmax_batch_size: 1\nbogus_field: 3\n')


def test_states_max_batch_size_sees_through_comments():
    assert states_max_batch_size("max_batch_size: 0")
    assert not states_max_batch_size('# max_batch_size: 4\nname: "m"')


def test_anchor_keys_suffix_repeated_names_like_graphcore():
    assert anchor_keys(["input", "input", "input", "Reshape:0", "Reshape:0"]) == [
        "input",
        "input/1",
        "input/2",
        "Reshape:0",
        "Reshape:0/1",
    ]


def test_name_map_file(tmp_path):
    path = tmp_path / "name_map.json"
    path.write_text('{"input": "digit_image", "softmax\\/Softmax:0": "output_labels"}')
    assert read_name_map(path) == {"input": "digit_image", "softmax/Softmax:0": "output_labels"}
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        read_name_map(path)
    path.write_text('{"input": 3}')
    with pytest.raises(ConfigError, match="name for anchor 'input' must be a non-empty string"):
        read_name_map(path)
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_name_map(path)


def test_name_map_renames_and_rejects_unknown_anchors(tiny):
    sig = signature_of(tiny, {"input": "x", "out": "probs"})
    assert [t.served_name for t in sig.inputs] == ["x"]
    assert [t.served_name for t in sig.outputs] == ["probs"]
    with pytest.raises(ConfigError, match="renames 'nope', which is not an input or output"):
        signature_of(tiny, {"nope": "x"})
    with pytest.raises(ConfigError, match="both be served as 'same'"):
        signature_of(tiny, {"input": "same", "out": "same"})


def test_missing_config_is_completed_from_the_file(tiny):
    plan = plan_for(None, tiny)
    cfg = plan.config
    assert cfg.name == "tiny" and cfg.backend == "poplar"
    assert cfg.max_batch_size == 1  # micro batch 1 x device iterations 1 x replicas 1
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [4])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("out", [3])]
    assert cfg.instance_group[0].count == 1 and cfg.instance_group[0].name == "tiny_0"
    assert cfg.version_policy.latest.num_versions == 1


def test_graphcore_rule_for_max_batch_size(micro):
    # micro batch 2 x device iterations 3 x replicas 2
    plan = plan_for(None, micro, name="micro")
    assert plan.max_batch_size == 12 and plan.step_rows == 4
    assert plan.config.HasField("dynamic_batching")  # filled in, as Triton does
    assert list(plan.config.input[0].dims) == [4]


def test_default_max_batch_size_setting(tiny):
    assert plan_for(None, tiny, default_max_batch_size=32).max_batch_size == 32


def test_partial_config_keeps_what_it_says(tiny):
    plan = plan_for(
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 50 }", tiny
    )
    assert plan.max_batch_size == 8
    assert plan.config.dynamic_batching.max_queue_delay_microseconds == 50
    assert [i.name for i in plan.config.input] == ["input"]
    plan = plan_for('input [ { name: "input" } ]\nmax_batch_size: 2', tiny)
    assert plan.config.input[0].data_type != 0 and list(plan.config.input[0].dims) == [4]


def test_max_batch_size_zero_serves_the_whole_anchor_shape(tiny):
    plan = plan_for("max_batch_size: 0", tiny)
    assert not plan.batching
    assert list(plan.config.input[0].dims) == [1, 4]


def test_auto_complete_disabled_needs_a_complete_config(tiny):
    with pytest.raises(ConfigError, match="no config.pbtxt"):
        plan_for(None, tiny, auto_complete=False)
    with pytest.raises(ConfigError, match="input 'input'.*missing"):
        plan_for("max_batch_size: 1", tiny, auto_complete=False)
    assert plan_for(config("tiny", max_batch_size=1), tiny, auto_complete=False).max_batch_size == 1


@pytest.mark.parametrize(
    "text, message",
    [
        (
            config("tiny", in_dims="1, 4"),
            r"input 'input' has dims \[1, 4\] but the model's anchor 'input' is F32\[1, 4\]: "
            r"expected dims \[4\] "
            r"\(with max_batch_size > 0 the dims leave out the batch dimension\)",
        ),
        (
            config("tiny", max_batch_size=0),
            r"input 'input' has dims \[4\] .*expected dims \[1, 4\] \(with max_batch_size 0",
        ),
        (
            config("tiny").replace("TYPE_FP32", "TYPE_INT32", 1),
            r"input 'input' has data_type TYPE_INT32 "
            r"but the model's anchor 'input' is F32 \(TYPE_FP32\)",
        ),
        (
            config("tiny", input_name="image"),
            r"input 'image' is not an input of the model; its inputs are 'input'",
        ),
        (
            config("tiny", output_name="probs"),
            r"output 'probs' is not an output of the model; its outputs are 'out'",
        ),
        (config("other"), r"names the model 'other' but its directory is 'tiny'"),
        (
            config("tiny").replace('"poplar"', '"onnxruntime"'),
            r"backend 'onnxruntime' is not served here",
        ),
        (config("tiny", extra="sequence_batching { }"), "sequence_batching is not supported"),
        (
            config(
                "tiny",
                max_batch_size=0,
                in_dims="1, 4",
                out_dims="1, 3",
                extra="dynamic_batching { }",
            ),
            "dynamic_batching needs max_batch_size > 0",
        ),
        (
            config(
                "tiny", max_batch_size=4, extra="dynamic_batching { preferred_batch_size: [ 8 ] }"
            ),
            r"preferred_batch_size 8 must be in \[1, max_batch_size 4\]",
        ),
        (config("tiny", extra="instance_group [ { kind: KIND_GPU } ]"), "KIND_GPU"),
        (
            config(
                "tiny",
                extra='parameters [ { key: "synchronous_execution" value: { '
                'string_value: "maybe" } } ]',
            ),
            "synchronous_execution",
        ),
        (
            config(
                "tiny", extra='parameters [ { key: "timeout_ns" value: { string_value: "soon" } } ]'
            ),
            "timeout_ns must be a whole number",
        ),
    ],
)
def test_config_checked_against_the_file(tiny, text, message):
    with pytest.raises(ConfigError, match=message):
        plan_for(text, tiny)


def test_reshape_between_served_and_model_shapes(tiny):
    plan = plan_for(
        config("tiny", in_dims="2, 2", extra="").replace(
            "dims: [ 2, 2 ] }", "dims: [ 2, 2 ] reshape: { shape: [ 4 ] } }"
        ),
        tiny,
    )
    assert plan.inputs[0].shape == (2, 2) and plan.inputs[0].model_shape == (4,)
    with pytest.raises(ConfigError, match="reshapes to"):
        plan_for(
            config("tiny", in_dims="2, 2").replace(
                "dims: [ 2, 2 ] }", "dims: [ 2, 2 ] reshape: { shape: [ 2, 2 ] } }"
            ),
            tiny,
        )


def test_blog_parameters_are_read(tiny):
    text = (
        BLOG_CONFIG.replace('"mnist"', '"tiny"')
        .replace("digit_image", "input")
        .replace("output_labels", "out")
        .replace("[ 1, 28, 28 ]", "[ 4 ]")
        .replace("[ 10 ]", "[ 3 ]")
    )
    plan = plan_for(text, tiny)
    assert plan.parameters.synchronous_execution
    assert plan.parameters.timeout_ns == 500000


def test_config_json_uses_numbers_and_triton_field_names(tiny):
    plan = plan_for(
        config("tiny", extra="dynamic_batching { max_queue_delay_microseconds: 100 }"), tiny
    )
    data = config_to_dict(plan.config)
    assert data["max_batch_size"] == 8
    assert data["input"][0]["dims"] == [4] and data["input"][0]["data_type"] == "TYPE_FP32"
    assert data["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    json.dumps(data)


def test_generated_config_round_trips_and_reads_like_the_blog(tiny):
    sig = signature_of(tiny, {"input": "digit_image", "out": "output_labels"})
    cfg = generate_config("mnist", sig, 16)
    text = config_to_text(cfg)
    assert parse_config(text) == cfg
    assert 'backend: "poplar"' in text and "dims: [ 4 ]" in text
    assert 'name: "digit_image"' in text and "dynamic_batching { }" in text
    build_plan(complete_config(parse_config(text), "mnist", sig, states_max_batch_size=True), sig)
