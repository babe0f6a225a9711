"""``config.pbtxt`` and its JSON form: reading, writing, and what a config states.

``config.pbtxt`` is protobuf text parsed into the ``ModelConfig`` message that ``tritonclient``
ships (``tritonclient.grpc.model_config_pb2``) by ``google.protobuf.text_format``; nothing here
parses the text by hand: even whether a text states ``max_batch_size`` (proto3 cannot tell 0
from absent) is read with ``text_format``'s tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..escaping import shorten
from .errors import ConfigError
from .folder_files import inside, read_model_file

__all__ = [
    "CONFIG_FILENAME",
    "MAX_CONFIG_BYTES",
    "MAX_SPECIFIC_VERSIONS",
    "config_from_json",
    "config_to_dict",
    "config_to_text",
    "json_states_max_batch_size",
    "model_config_pb2",
    "parse_config",
    "read_config",
    "specific_versions",
    "states_max_batch_size",
]

CONFIG_FILENAME = "config.pbtxt"
#: the largest config.pbtxt (or configs/NAME.pbtxt) read
MAX_CONFIG_BYTES = 1 << 20
#: the most versions ``version_policy { specific { versions: [...] } }`` may list
MAX_SPECIFIC_VERSIONS = 1024


def model_config_pb2():
    """``tritonclient``'s ``model_config_pb2`` module (imported on first use)."""
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


# -- reading and writing configs ---------------------------------------------------------------


def parse_config(text: str, source: str = CONFIG_FILENAME):
    """``ModelConfig`` from protobuf text; :class:`ConfigError` naming the line on a syntax
    error."""
    from google.protobuf import text_format

    mc = model_config_pb2()
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {shorten(str(exc), 1000)}") from None
    return config


def states_max_batch_size(text: str) -> bool:
    """Whether a config text sets ``max_batch_size`` (proto3 cannot tell 0 from absent).

    Read with ``text_format``'s own tokenizer, so comments and strings are passed over; only
    the top-level field counts. A text the tokenizer refuses states nothing (its parse error
    is :func:`parse_config`'s to report).
    """
    from google.protobuf import text_format

    tokens = text_format.Tokenizer(text.split("\n"))
    depth = 0
    try:
        while not tokens.AtEnd():
            token = tokens.token
            if token in ("{", "<", "["):
                depth += 1
            elif token in ("}", ">", "]"):
                depth -= 1
            elif depth == 0 and token == "max_batch_size":
                tokens.NextToken()
                if tokens.token == ":":
                    return True
                continue
            tokens.NextToken()
    except text_format.ParseError:
        return False
    return False


def read_config(model_dir: Path, config_name: str | None = None):
    """``(ModelConfig or None, states max_batch_size)`` for a model directory.

    ``config_name`` selects ``configs/<name>.pbtxt`` when that file exists (tritonserver's
    ``--model-config-name``); otherwise ``config.pbtxt`` is read. No file gives ``None``; a
    file that is there must be a regular file of at most :data:`MAX_CONFIG_BYTES`
    (:func:`read_model_file`), else :class:`ConfigError`.
    """
    if config_name:
        shown = shorten(config_name)
        if "/" in config_name or "\\" in config_name:
            raise ConfigError(
                f"model config name '{shown}' must be a file name in configs/, without '/'"
            )
        source = f"configs/{shown}.pbtxt"
        path = inside(model_dir, f"configs/{config_name}.pbtxt", f"model config name '{shown}'")
        text = read_model_file(path, source, MAX_CONFIG_BYTES)
        if text is not None:
            return parse_config(text, source), states_max_batch_size(text)
    text = read_model_file(model_dir / CONFIG_FILENAME, CONFIG_FILENAME, MAX_CONFIG_BYTES)
    if text is None:
        return None, False
    return parse_config(text, CONFIG_FILENAME), states_max_batch_size(text)


def config_from_json(text: str | bytes):
    """``ModelConfig`` from its JSON form (the repository load API's ``config`` parameter)."""
    from google.protobuf import json_format

    mc = model_config_pb2()
    config = mc.ModelConfig()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(
            "the config given to load is not a ModelConfig in JSON: failed to "
            f"load JSON: {shorten(str(exc))}"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            "the config given to load is not a ModelConfig in JSON: expected an "
            f"object, found {type(value).__name__}"
        )
    _check_listed_versions(value)  # before the protobuf conversion, slow for a long list
    try:
        json_format.ParseDict(value, config)
    except json_format.ParseError as exc:
        raise ConfigError(f"the config given to load is not a ModelConfig in JSON: {exc}") from None
    specific_versions(config)  # refused before the load starts
    return config


def _check_listed_versions(value: dict) -> None:
    policy = value.get("version_policy", value.get("versionPolicy"))
    versions = policy.get("specific", {}) if isinstance(policy, dict) else {}
    listed = versions.get("versions") if isinstance(versions, dict) else None
    if isinstance(listed, list) and len(listed) > MAX_SPECIFIC_VERSIONS:
        raise ConfigError(
            f"version_policy specific lists {len(listed)} versions, over the "
            f"limit of {MAX_SPECIFIC_VERSIONS}"
        )


def specific_versions(config) -> list[int] | None:
    """The distinct versions ``version_policy { specific { versions: [...] } }`` names, in
    ascending order; ``None`` for another policy (or no config).

    :class:`ConfigError` for an empty list, a negative version (a version is the name of a
    version folder: a number >= 0) or a list longer than :data:`MAX_SPECIFIC_VERSIONS`.
    """
    if config is None or not config.HasField("version_policy"):
        return None
    policy = config.version_policy
    if policy.WhichOneof("policy_choice") != "specific":
        return None
    listed = policy.specific.versions
    if not listed:
        raise ConfigError("version_policy specific lists no version: expected at least one")
    if len(listed) > MAX_SPECIFIC_VERSIONS:
        raise ConfigError(
            f"version_policy specific lists {len(listed)} versions, over the "
            f"limit of {MAX_SPECIFIC_VERSIONS}"
        )
    negative = [v for v in listed if v < 0]
    if negative:
        raise ConfigError(
            f"version_policy specific lists version {negative[0]}: expected "
            "versions >= 0 (a version is the name of a version folder)"
        )
    return sorted(set(listed))


def json_states_max_batch_size(text: str | bytes) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and "max_batch_size" in value


def config_to_text(config) -> str:
    """Protobuf text of a config, laid out like hand-written Triton configs where the fields
    allow it (``dims: [ 1, 28, 28 ]``); checked by parsing it back."""
    from google.protobuf import text_format

    text = _pretty_config(config)
    if text is not None:
        try:
            if parse_config(text) == config:
                return text
        except ConfigError:
            pass
    return text_format.MessageToString(config)


def _text_string(value: str) -> str:
    """``value`` as a protobuf text string literal: printable characters as they are, quotes,
    backslashes and the rest (controls, bidi overrides...) as escapes of their UTF-8 bytes."""
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

    def escaped(ch: str) -> str:
        if ch in named:
            return named[ch]
        if ch.isprintable():
            return ch
        return "".join(f"\\{byte:03o}" for byte in ch.encode("utf-8"))

    return '"' + "".join(escaped(ch) for ch in value) + '"'


def _pretty_config(config) -> str | None:
    mc = model_config_pb2()
    simple = {
        "name",
        "backend",
        "platform",
        "max_batch_size",
        "input",
        "output",
        "dynamic_batching",
        "instance_group",
        "parameters",
        "default_model_filename",
    }
    if any(fd.name not in simple for fd, _ in config.ListFields()):
        return None

    def tensor(entry, kind: str) -> str | None:
        allowed = {"name", "data_type", "dims", "reshape"}
        if any(fd.name not in allowed for fd, _ in entry.ListFields()):
            return None
        parts = [
            f"name: {_text_string(entry.name)}",
            f"data_type: {mc.DataType.Name(entry.data_type)}",
            f"dims: [ {', '.join(str(d) for d in entry.dims)} ]",
        ]
        if entry.HasField("reshape"):
            parts.append(
                f"reshape: {{ shape: [ {', '.join(str(d) for d in entry.reshape.shape)} ] }}"
            )
        return "  {\n" + "".join(f"    {p}\n" for p in parts) + "  }"

    lines = [f"name: {_text_string(config.name)}"] if config.name else []
    if config.backend:
        lines.append(f"backend: {_text_string(config.backend)}")
    if config.platform:
        lines.append(f"platform: {_text_string(config.platform)}")
    lines.append(f"max_batch_size: {config.max_batch_size}")
    for kind, entries in (("input", config.input), ("output", config.output)):
        if not entries:
            continue
        blocks = [tensor(e, kind) for e in entries]
        if any(b is None for b in blocks):
            return None
        lines.append(f"{kind} [\n" + ",\n".join(blocks) + "\n]")
    if config.HasField("dynamic_batching"):
        db = config.dynamic_batching
        if any(fd.name != "max_queue_delay_microseconds" for fd, _ in db.ListFields()):
            return None
        inner = (
            f" max_queue_delay_microseconds: {db.max_queue_delay_microseconds} "
            if db.max_queue_delay_microseconds
            else " "
        )
        lines.append(f"dynamic_batching {{{inner}}}")
    if config.instance_group:
        groups = []
        for g in config.instance_group:
            if any(fd.name not in ("kind", "count", "name") for fd, _ in g.ListFields()):
                return None
            fields = ([f"name: {_text_string(g.name)}"] if g.name else []) + [
                f"kind: {mc.ModelInstanceGroup.Kind.Name(g.kind)}",
                f"count: {g.count}",
            ]
            groups.append("{ " + " ".join(fields) + " }")
        lines.append("instance_group [ " + ", ".join(groups) + " ]")
    if config.parameters:
        params = [
            f"  {{ key: {_text_string(k)} value: {{ string_value: "
            f"{_text_string(v.string_value)} }} }}"
            for k, v in sorted(config.parameters.items())
        ]
        lines.append("parameters [\n" + ",\n".join(params) + "\n]")
    if config.default_model_filename:
        lines.append(f"default_model_filename: {_text_string(config.default_model_filename)}")
    return "\n".join(lines) + "\n"


def config_to_dict(message) -> dict:
    """A protobuf message as Triton's JSON: proto field names, defaults in, 64-bit ints as
    numbers (``json_format`` writes them as strings)."""
    from google.protobuf import json_format

    try:
        data = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5.26
        data = json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    return _ints(data, message.DESCRIPTOR)


def _int64_types() -> frozenset[int]:
    from google.protobuf.descriptor import FieldDescriptor as F

    return frozenset({F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64})


def _is_repeated(fd) -> bool:
    flag = getattr(fd, "is_repeated", None)  # protobuf >= 6.32; label() is deprecated there
    if isinstance(flag, bool):
        return flag
    return fd.label == fd.LABEL_REPEATED


def _ints(value: dict, descriptor) -> dict:
    int64 = _int64_types()
    for fd in descriptor.fields:
        if fd.name not in value:
            continue
        v = value[fd.name]
        repeated = _is_repeated(fd)
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            vf = mt.fields_by_name["value"]
            if vf.message_type is not None:
                value[fd.name] = {k: _ints(x, vf.message_type) for k, x in v.items()}
            elif vf.type in int64:
                value[fd.name] = {k: int(x) for k, x in v.items()}
        elif mt is not None:
            if mt.full_name.startswith("google.protobuf."):
                continue
            value[fd.name] = [_ints(x, mt) for x in v] if repeated else _ints(v, mt)
        elif fd.type in int64:
            value[fd.name] = [int(x) for x in v] if repeated else int(v)
    return value
