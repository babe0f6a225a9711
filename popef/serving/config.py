"""Triton model configuration for PopEF models: read, complete, check (docs/serving.md).

``config.pbtxt`` is protobuf text parsed into the ``ModelConfig`` message that ``tritonclient``
ships (``tritonclient.grpc.model_config_pb2``) by ``google.protobuf.text_format``; nothing here
parses the text by hand. A model's side of the contract is its :class:`Signature`: the user
anchors of the PopEF file as :class:`ModelRunner` describes them, renamed by ``name_map.json``
(PopEF anchor name → served name; the second anchor of a name is ``name/1``, the third
``name/2``, as in Graphcore's Poplar backend). :func:`complete_config` fills in what a config
leaves out (Triton's auto-complete) and :func:`build_plan` checks the result against the
signature, giving the :class:`ServingPlan` that the server validates requests with.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..escaping import shorten
from ..reader import file_kind
from ..types import DataType
from . import datatypes
from .datatypes import TritonType
from .errors import ServingError

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_EXECUTOR",
    "DEFAULT_MODEL_FILENAME",
    "MAX_CONFIG_BYTES",
    "MAX_DELAY_NS",
    "MAX_INSTANCES",
    "MAX_LABEL_FILE_BYTES",
    "MAX_NAME_MAP_BYTES",
    "MAX_SPECIFIC_VERSIONS",
    "NAME_MAP_FILENAME",
    "SUPPORTED_BACKENDS",
    "ConfigError",
    "ModelParameters",
    "ModelTensor",
    "ServingPlan",
    "Signature",
    "TensorPlan",
    "anchor_keys",
    "build_plan",
    "check_name_map_file",
    "complete_config",
    "config_from_json",
    "config_to_dict",
    "config_to_text",
    "generate_config",
    "inside",
    "json_states_max_batch_size",
    "parse_config",
    "read_config",
    "read_model_file",
    "read_name_map",
    "regular_file",
    "signature_of",
    "specific_versions",
    "states_max_batch_size",
]

DEFAULT_MODEL_FILENAME = "executable.popef"
#: the executor of a model whose config names none (``parameters { key: "executor" }``)
DEFAULT_EXECUTOR = "cpu"
NAME_MAP_FILENAME = "name_map.json"
CONFIG_FILENAME = "config.pbtxt"
#: backend (or platform) names served; "poplar" is Graphcore's Triton backend
SUPPORTED_BACKENDS = ("poplar", "popef")
#: the largest config.pbtxt (or configs/NAME.pbtxt) read
MAX_CONFIG_BYTES = 1 << 20
#: the largest name_map.json read
MAX_NAME_MAP_BYTES = 1 << 20
#: the largest label_filename read
MAX_LABEL_FILE_BYTES = 1 << 20
#: the most model instances (runner threads) that the instance groups of one model may ask for
MAX_INSTANCES = 64
#: the longest wait a config may ask for, in nanoseconds (one day): a batching delay
#: (``max_queue_delay_microseconds``, ``timeout_ns``) or an execution's test delay
#: (``execute_delay_ms`` × ``instance_wise_delay_multiplier``); longer is refused at load
MAX_DELAY_NS = 86_400 * 10**9
#: the most versions ``version_policy { specific { versions: [...] } }`` may list
MAX_SPECIFIC_VERSIONS = 1024


class ConfigError(ServingError):
    """A model's configuration or files are wrong; the message says which and why."""


# -- files a config names -------------------------------------------------------------------------

def inside(model_dir: Path, relative: str, what: str) -> Path:
    """The file ``relative`` names in the model folder, with symlinks resolved.

    Every file name a config gives goes through here: it must be a relative path that, once
    symlinks are followed, stays inside the model folder (itself resolved, so a model folder
    that is a symlink is fine). :class:`ConfigError` otherwise, whose message starts with
    ``what`` (the setting and the name it gave, e.g. ``label_filename 'labels.txt'``).
    """
    if not relative or "\0" in relative:
        raise ConfigError(f"{what} is not a file name")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise ConfigError(f"{what} is an absolute path: expected a path relative to the model "
                          f"folder '{model_dir.name}'")
    try:
        root = model_dir.resolve()
        path = (model_dir / relative).resolve()
    except RuntimeError:
        raise ConfigError(f"cannot resolve {what}: a symlink loop") from None
    except OSError as exc:  # (its text would repeat the whole path)
        raise ConfigError(f"cannot resolve {what}: {exc.strerror}") from None
    if path == root or not path.is_relative_to(root):
        raise ConfigError(f"{what} is outside the model folder '{model_dir.name}' (symlinks "
                          "followed): only files inside it are read")
    return path


def _not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (None when it is)."""
    if stat.S_ISREG(mode):
        return None
    return file_kind(mode)


def regular_file(path: Path, what: str) -> os.stat_result | None:
    """``path``'s status (symlinks followed), or ``None`` when there is no such file.

    :class:`ConfigError` when it is there but not a regular file: a FIFO, a device, a folder,
    or a symlink to a missing file. ``what`` names the file in messages.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError(f"{what} is a symlink to a missing file") from None
        return None
    except OSError as exc:  # (its text would repeat the whole path)
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    found = _not_regular(info.st_mode)
    if found is not None:
        raise ConfigError(f"{what} is not a regular file: found {found}")
    return info


def read_model_file(path: Path, what: str, limit: int) -> str | None:
    """The UTF-8 text of a file of a model folder, or ``None`` when there is no such file.

    The file must be a regular file (:func:`regular_file`) of at most ``limit`` bytes. Nothing
    else is ever opened: the file is checked before opening, opened without blocking (a FIFO
    swapped in meanwhile cannot hold the server) and checked again once open.
    """
    info = regular_file(path, what)
    if info is None:
        return None
    if info.st_size > limit:
        raise ConfigError(f"{what} is {info.st_size} bytes, over the limit of {limit}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            found = _not_regular(os.fstat(f.fileno()).st_mode)
            if found is not None:  # replaced since the check
                raise ConfigError(f"{what} is not a regular file: found {found}")
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} is over the limit of {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not UTF-8 text: {exc.reason} at offset "
                          f"{exc.start:#x}") from None


def _model_config_pb2():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


# -- reading and writing configs ---------------------------------------------------------------

def parse_config(text: str, source: str = CONFIG_FILENAME):
    """``ModelConfig`` from protobuf text; :class:`ConfigError` naming the line on a syntax error."""
    from google.protobuf import text_format

    mc = _model_config_pb2()
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {shorten(str(exc), 1000)}") from None
    return config


_MAX_BATCH_RE = re.compile(r"(^|[\s{,;])max_batch_size\s*:", re.MULTILINE)


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def states_max_batch_size(text: str) -> bool:
    """Whether a config text sets ``max_batch_size`` (proto3 cannot tell 0 from absent)."""
    return bool(_MAX_BATCH_RE.search(_strip_comments(text)))


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
            raise ConfigError(f"model config name '{shown}' must be a file name in configs/, "
                              "without '/'")
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

    mc = _model_config_pb2()
    config = mc.ModelConfig()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError("the config given to load is not a ModelConfig in JSON: failed to "
                          f"load JSON: {shorten(str(exc))}") from None
    if not isinstance(value, dict):
        raise ConfigError("the config given to load is not a ModelConfig in JSON: expected an "
                          f"object, found {type(value).__name__}")
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
        raise ConfigError(f"version_policy specific lists {len(listed)} versions, over the "
                          f"limit of {MAX_SPECIFIC_VERSIONS}")


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
        raise ConfigError(f"version_policy specific lists {len(listed)} versions, over the "
                          f"limit of {MAX_SPECIFIC_VERSIONS}")
    negative = [v for v in listed if v < 0]
    if negative:
        raise ConfigError(f"version_policy specific lists version {negative[0]}: expected "
                          "versions >= 0 (a version is the name of a version folder)")
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
    mc = _model_config_pb2()
    simple = {"name", "backend", "platform", "max_batch_size", "input", "output",
              "dynamic_batching", "instance_group", "parameters", "default_model_filename"}
    if any(fd.name not in simple for fd, _ in config.ListFields()):
        return None

    def tensor(entry, kind: str) -> str | None:
        allowed = {"name", "data_type", "dims", "reshape"}
        if any(fd.name not in allowed for fd, _ in entry.ListFields()):
            return None
        parts = [f"name: {_text_string(entry.name)}",
                 f"data_type: {mc.DataType.Name(entry.data_type)}",
                 f"dims: [ {', '.join(str(d) for d in entry.dims)} ]"]
        if entry.HasField("reshape"):
            parts.append(f"reshape: {{ shape: [ {', '.join(str(d) for d in entry.reshape.shape)} ] }}")
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
        inner = (f" max_queue_delay_microseconds: {db.max_queue_delay_microseconds} "
                 if db.max_queue_delay_microseconds else " ")
        lines.append(f"dynamic_batching {{{inner}}}")
    if config.instance_group:
        groups = []
        for g in config.instance_group:
            if any(fd.name not in ("kind", "count", "name") for fd, _ in g.ListFields()):
                return None
            fields = ([f"name: {_text_string(g.name)}"] if g.name else []) + [
                f"kind: {mc.ModelInstanceGroup.Kind.Name(g.kind)}", f"count: {g.count}"]
            groups.append("{ " + " ".join(fields) + " }")
        lines.append("instance_group [ " + ", ".join(groups) + " ]")
    if config.parameters:
        params = [f"  {{ key: {_text_string(k)} value: {{ string_value: "
                  f"{_text_string(v.string_value)} }} }}"
                  for k, v in sorted(config.parameters.items())]
        lines.append("parameters [\n" + ",\n".join(params) + "\n]")
    if config.default_model_filename:
        lines.append(f"default_model_filename: {_text_string(config.default_model_filename)}")
    return "\n".join(lines) + "\n"


def config_to_dict(message) -> dict:
    """A protobuf message as Triton's JSON: proto field names, defaults in, 64-bit ints as
    numbers (``json_format`` writes them as strings)."""
    from google.protobuf import json_format

    try:
        data = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # protobuf < 5.26
        data = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
    return _ints(data, message.DESCRIPTOR)


def _int64_types() -> frozenset[int]:
    from google.protobuf.descriptor import FieldDescriptor as F

    return frozenset({F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64,
                      F.TYPE_SFIXED64})


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


# -- name maps and signatures --------------------------------------------------------------------

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
        raise ConfigError(f"{path.name} must be a JSON object of anchor name to tensor name, "
                          f"got a {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path.name}: the name for anchor '{shorten(key)}' must be a "
                              f"non-empty string, got {shorten(json.dumps(value))}")
    return dict(data)


def anchor_keys(names: Iterable[str]) -> list[str]:
    """Graphcore's keys for anchor names: a repeated name gets ``/1``, ``/2``, … suffixes."""
    seen: Counter[str] = Counter()
    keys = []
    for name in names:
        keys.append(name if not seen[name] else f"{name}/{seen[name]}")
        seen[name] += 1
    return keys


@dataclass(frozen=True)
class ModelTensor:
    """One user anchor of the model, as served."""

    key: str  # the anchor's name, with a /N suffix when the name repeats
    runtime_name: str  # the name ModelRunner takes or gives
    served_name: str  # after name_map.json
    dtype: DataType
    shape: tuple[int, ...]  # one step's shape, as ModelRunner describes it
    per_replica: bool

    def describe(self) -> str:
        label = f"'{self.served_name}'"
        if self.served_name != self.key:
            label += f" (anchor '{self.key}')"
        return label

    def anchor_text(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    """The served side of a model file: its inputs and outputs and how it batches."""

    inputs: tuple[ModelTensor, ...]
    outputs: tuple[ModelTensor, ...]
    replication_factor: int = 1
    device_iterations: int = 1
    micro_batch: int | None = None  # rows of one replica's step; None when it cannot batch
    per_replica: bool = False
    batch_blocker: str | None = None  # why the model has no batch dimension

    @property
    def step_rows(self) -> int:
        """Rows one step of the runtime takes: the micro batch, times the replicas."""
        assert self.micro_batch is not None
        return self.micro_batch * (self.replication_factor if self.per_replica else 1)

    @property
    def default_max_batch_size(self) -> int:
        """Graphcore's rule: micro batch × device iterations × replicas (0 if it cannot batch)."""
        if self.micro_batch is None:
            return 0
        return self.step_rows * self.device_iterations

    def batch_free_shape(self, tensor: ModelTensor) -> tuple[int, ...]:
        """The anchor's shape without its batch dimension (and replica dimension)."""
        return tensor.shape[2:] if tensor.per_replica else tensor.shape[1:]


def signature_of(runner, name_map: dict[str, str] | None = None) -> Signature:
    """The :class:`Signature` of a :class:`popef.runtime.ModelRunner`, renamed by ``name_map``."""
    descs_in = list(runner.get_execute_inputs())
    descs_out = list(runner.get_execute_outputs())
    keys = anchor_keys(d.name for d in (*descs_in, *descs_out))
    name_map = dict(name_map or {})
    unknown = [k for k in name_map if k not in keys]
    if unknown:
        raise ConfigError(f"{NAME_MAP_FILENAME} renames '{shorten(unknown[0])}', which is not an input or "
                          f"output of the model (its anchors: {_quoted(keys)})")
    tensors = []
    for key, desc in zip(keys, (*descs_in, *descs_out)):
        tensors.append(ModelTensor(key, desc.name, name_map.get(key, key), desc.dtype,
                                   tuple(int(d) for d in desc.shape),
                                   bool(getattr(desc, "is_per_replica", False))))
    served = Counter(t.served_name for t in tensors)
    repeated = [n for n, c in served.items() if c > 1]
    if repeated:
        users = [t.key for t in tensors if t.served_name == repeated[0]]
        raise ConfigError(f"two anchors would both be served as '{repeated[0]}' "
                          f"({_quoted(users)}); give them different names in {NAME_MAP_FILENAME}")
    inputs, outputs = tuple(tensors[:len(descs_in)]), tuple(tensors[len(descs_in):])
    metadata = runner.model.metadata
    rf = max(1, int(metadata.replication_factor))
    di = max(1, int(metadata.device_iterations))
    micro, per_replica, blocker = _micro_batch((*inputs, *outputs), rf)
    return Signature(inputs, outputs, rf, di, micro, per_replica, blocker)


def _micro_batch(tensors: Sequence[ModelTensor], rf: int) -> tuple[int | None, bool, str | None]:
    if not tensors:
        return None, False, "the model has no inputs or outputs"
    flags = {t.per_replica for t in tensors}
    if len(flags) > 1:
        mixed = next(t for t in tensors if t.per_replica != tensors[0].per_replica)
        return None, False, (f"anchor {mixed.describe()} is {'' if mixed.per_replica else 'not '}"
                             f"per replica and {tensors[0].describe()} is "
                             f"{'' if tensors[0].per_replica else 'not '}per replica")
    per_replica = flags.pop()
    lead = 1 if per_replica else 0
    sizes: dict[int, ModelTensor] = {}
    for t in tensors:
        if len(t.shape) <= lead:
            return None, per_replica, f"anchor {t.describe()} is {t.anchor_text()}, with no batch dimension"
        sizes.setdefault(t.shape[lead], t)
    if len(sizes) > 1:
        (_, ta), (_, tb) = list(sizes.items())[:2]
        return None, per_replica, (f"anchors disagree on the batch dimension: {ta.describe()} is "
                                   f"{ta.anchor_text()} and {tb.describe()} is {tb.anchor_text()}")
    (micro,) = sizes
    if micro < 1:
        return None, per_replica, "the batch dimension of the anchors is 0"
    return micro, per_replica, None


# -- parameters -------------------------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ModelParameters:
    """The config ``parameters`` this server reads (docs/serving.md, "Parameters")."""

    executor: str | None = None  # None: the server's default
    executor_options: dict[str, str] = field(default_factory=dict)
    synchronous_execution: bool = True
    timeout_ns: int | None = None
    max_queue_size: int | None = None
    execute_delay_ms: int = 0  # Graphcore's test knob: each execution sleeps this long first
    instance_wise_delay_multiplier: int = 0  # ... times max(multiplier × instance, 1)
    unknown: tuple[str, ...] = ()

    def delay_seconds(self, instance: int) -> float:
        if not self.execute_delay_ms:
            return 0.0
        return max(self.instance_wise_delay_multiplier * instance, 1) * self.execute_delay_ms / 1e3

    @classmethod
    def of(cls, config) -> ModelParameters:
        values = {k: v.string_value for k, v in config.parameters.items()}
        executor = values.pop("executor", None) or None
        options = {k[len("executor."):]: values.pop(k) for k in list(values)
                   if k.startswith("executor.")}
        sync = values.pop("synchronous_execution", "1").strip().lower()
        if sync not in _TRUE + _FALSE:
            raise ConfigError(f"parameter synchronous_execution must be \"1\" or \"0\", got "
                              f"\"{sync}\"")
        timeout = values.pop("timeout_ns", None)
        timeout_ns = _int_parameter("timeout_ns", timeout) if timeout is not None else None
        queue = values.pop("max_queue_size", None)
        max_queue = _int_parameter("max_queue_size", queue) if queue is not None else None
        delay = _int_parameter("execute_delay_ms", values.pop("execute_delay_ms", "0"))
        multiplier = _int_parameter("instance_wise_delay_multiplier",
                                    values.pop("instance_wise_delay_multiplier", "0"))
        parameters = cls(executor, options, sync in _TRUE, timeout_ns, max_queue, delay,
                         multiplier, tuple(sorted(values)))
        parameters._check_delays(sum(max(1, g.count) for g in config.instance_group) or 1)
        return parameters

    def _check_delays(self, instances: int) -> None:
        """Refuse a wait over MAX_DELAY_NS (a longer one cannot even be waited for: Python's
        ``threading.TIMEOUT_MAX``), naming the parameters that ask for it."""
        if self.timeout_ns is not None and self.timeout_ns > MAX_DELAY_NS:
            raise ConfigError(f"parameter timeout_ns must be at most {MAX_DELAY_NS} (one day), "
                              f"got {self.timeout_ns}")
        longest_ms = self.execute_delay_ms * max(
            self.instance_wise_delay_multiplier * (instances - 1), 1)
        if longest_ms * 10**6 > MAX_DELAY_NS:
            how = (f"parameter execute_delay_ms {self.execute_delay_ms}" if longest_ms ==
                   self.execute_delay_ms else
                   f"parameters execute_delay_ms {self.execute_delay_ms} × "
                   f"instance_wise_delay_multiplier {self.instance_wise_delay_multiplier} × "
                   f"instance {instances - 1}")
            raise ConfigError(f"{how} asks for a delay of {longest_ms} ms per execution: "
                              f"expected at most {MAX_DELAY_NS // 10**6} ms (one day)")


def _int_parameter(name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"parameter {name} must be a whole number, got \"{text}\"") from None
    if value < 0:
        raise ConfigError(f"parameter {name} must be >= 0, got {value}")
    return value


# -- auto-complete --------------------------------------------------------------------------------

def complete_config(config, name: str, signature: Signature, *, states_max_batch_size: bool,
                    auto_complete: bool = True, default_max_batch_size: int | None = None,
                    model_filename: str | None = None):
    """The config with what it leaves out filled from the model file (Triton's auto-complete).

    ``config`` may be ``None`` (no config.pbtxt). Filled when absent: the name, the backend,
    ``max_batch_size`` (Graphcore's rule, or ``default_max_batch_size``; 0 when the model has no
    batch dimension), inputs and outputs, a tensor's ``data_type`` and ``dims``, and
    ``dynamic_batching`` when ``max_batch_size`` was filled in and is above 1. Instance groups,
    the version policy and the model file name are always defaulted. With ``auto_complete``
    false, a config that leaves out a tensor, a data type or dims is an error instead.
    """
    mc = _model_config_pb2()
    if config is None:
        if not auto_complete:
            raise ConfigError(f"no {CONFIG_FILENAME} (auto-complete is disabled, so the model "
                              "needs a complete config)")
        config = mc.ModelConfig()
        states_max_batch_size = False
    else:
        copy = mc.ModelConfig()
        copy.CopyFrom(config)
        config = copy

    if not config.name:
        config.name = name
    elif config.name != name:
        raise ConfigError(f"{CONFIG_FILENAME} names the model '{shorten(config.name)}' but its "
                          f"directory is '{name}'")
    if not config.backend and not config.platform:
        config.backend = SUPPORTED_BACKENDS[0]
    _check_backend(config)

    filled_batch = False
    if not states_max_batch_size and config.max_batch_size == 0:
        if auto_complete and not config.input and not config.output:
            if signature.micro_batch is not None:
                config.max_batch_size = (default_max_batch_size
                                         if default_max_batch_size is not None
                                         else signature.default_max_batch_size)
                filled_batch = True

    batching = config.max_batch_size > 0
    for kind, tensors, entries in (("input", signature.inputs, config.input),
                                   ("output", signature.outputs, config.output)):
        listed = {e.name for e in entries}
        by_name = {t.served_name: t for t in tensors}
        for entry in entries:
            tensor = by_name.get(entry.name)
            if tensor is None:
                continue  # build_plan reports it
            if entry.data_type == mc.TYPE_INVALID:
                if not auto_complete:
                    raise ConfigError(f"{kind} '{entry.name}' has no data_type (auto-complete "
                                      "is disabled)")
                ttype = _triton_type(tensor)
                entry.data_type = datatypes.config_enum(ttype)
            if not entry.dims and not entry.HasField("reshape"):
                if not auto_complete:
                    raise ConfigError(f"{kind} '{entry.name}' has no dims (auto-complete is "
                                      "disabled)")
                _set_dims(entry, _model_dims(signature, tensor, batching))
        if kind == "output" and entries:
            continue  # a config may serve a subset of the outputs
        for tensor in tensors:
            if tensor.served_name in listed:
                continue
            if not auto_complete:
                raise ConfigError(f"the model's {kind} {tensor.describe()} is missing from "
                                  f"{CONFIG_FILENAME} (auto-complete is disabled)")
            entry = entries.add()
            entry.name = tensor.served_name
            entry.data_type = datatypes.config_enum(_triton_type(tensor))
            _set_dims(entry, _model_dims(signature, tensor, batching))

    if (filled_batch and config.max_batch_size > 1
            and config.WhichOneof("scheduling_choice") is None):
        config.dynamic_batching.SetInParent()

    if not config.instance_group:
        config.instance_group.add()
    for i, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{i}"
        if group.kind == mc.ModelInstanceGroup.KIND_AUTO:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
        if group.count == 0:
            group.count = 1
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if not config.default_model_filename and model_filename:
        config.default_model_filename = model_filename
    return config


def _triton_type(tensor: ModelTensor) -> TritonType:
    ttype = datatypes.from_popef(tensor.dtype)
    if ttype is None:
        raise ConfigError(f"anchor {tensor.describe()} is {tensor.dtype.name}, which has no "
                          "Triton data type")
    return ttype


def _model_dims(signature: Signature, tensor: ModelTensor, batching: bool) -> tuple[int, ...]:
    return signature.batch_free_shape(tensor) if batching else tensor.shape


def _set_dims(entry, dims: Sequence[int]) -> None:
    del entry.dims[:]
    if dims:
        entry.dims.extend(dims)
    else:  # Triton forbids empty dims: [1] reshaped to a scalar
        entry.dims.append(1)
        entry.reshape.SetInParent()


def check_backend(config) -> None:
    """The config is one this server runs: no ensemble, backend (or platform) "poplar"."""
    _check_backend(config)


def _check_backend(config) -> None:
    if config.platform == "ensemble" or config.WhichOneof("scheduling_choice") == \
            "ensemble_scheduling":
        raise ConfigError("ensembles are not supported: this server runs PopEF models one at "
                          "a time; chain the models in the client")
    for label, value in (("backend", config.backend), ("platform", config.platform)):
        if value and value not in SUPPORTED_BACKENDS:
            raise ConfigError(f"{label} '{shorten(value)}' is not served here: this server "
                              "runs PopEF models, set backend: \"poplar\"")


# -- checking a config against the model --------------------------------------------------------

@dataclass(frozen=True)
class TensorPlan:
    """One served tensor: how a request's array becomes the runtime's and back."""

    name: str  # served name
    runtime_name: str
    key: str
    ttype: TritonType
    dims: tuple[int, ...]  # as the config states them (may hold -1), without the batch dimension
    shape: tuple[int, ...]  # the concrete served shape without the batch dimension
    model_shape: tuple[int, ...]  # the anchor's shape without batch (and replica) dimension
    per_replica: bool
    labels: tuple[str, ...] = ()  # label_filename's lines (outputs)

    @property
    def metadata_shape(self) -> list[int]:
        return list(self.dims)


@dataclass(frozen=True)
class ServingPlan:
    """A checked config: what requests may carry and how they run."""

    config: Any  # the completed ModelConfig
    inputs: tuple[TensorPlan, ...]
    outputs: tuple[TensorPlan, ...]
    max_batch_size: int
    step_rows: int  # rows one runtime step takes (batches are padded to a multiple)
    micro_batch: int
    replication_factor: int
    parameters: ModelParameters

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorPlan | None:
        return self._inputs.get(name)

    def output(self, name: str) -> TensorPlan | None:
        return self._outputs.get(name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs", {t.name: t for t in self.inputs})
        object.__setattr__(self, "_outputs", {t.name: t for t in self.outputs})


def build_plan(config, signature: Signature, model_dir: Path | None = None) -> ServingPlan:
    """Check ``config`` against ``signature``; :class:`ConfigError` says what does not match."""
    mc = _model_config_pb2()
    _check_backend(config)
    parameters = ModelParameters.of(config)
    mbs = config.max_batch_size
    if mbs < 0:
        raise ConfigError(f"max_batch_size must be >= 0, got {mbs}")
    if mbs > 0 and signature.micro_batch is None:
        raise ConfigError(f"max_batch_size {mbs} needs a batch dimension, but "
                          f"{signature.batch_blocker}; use max_batch_size: 0")
    scheduling = config.WhichOneof("scheduling_choice")
    if scheduling in ("sequence_batching", "ensemble_scheduling"):
        raise ConfigError(f"{scheduling} is not supported; use dynamic_batching or none")
    if scheduling == "dynamic_batching":
        if mbs == 0:
            raise ConfigError("dynamic_batching needs max_batch_size > 0")
        for size in config.dynamic_batching.preferred_batch_size:
            if not 0 < size <= mbs:
                raise ConfigError(f"preferred_batch_size {size} must be in [1, max_batch_size "
                                  f"{mbs}]")
        if config.dynamic_batching.priority_levels > 1:
            raise ConfigError("dynamic_batching priority levels are not supported")
        queue_delay_us = config.dynamic_batching.max_queue_delay_microseconds
        if queue_delay_us * 1000 > MAX_DELAY_NS:
            raise ConfigError(f"dynamic_batching max_queue_delay_microseconds must be at most "
                              f"{MAX_DELAY_NS // 1000} (one day), got {queue_delay_us}")
    if config.HasField("model_transaction_policy") and config.model_transaction_policy.decoupled:
        raise ConfigError("decoupled models are not supported")
    for group in config.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            raise ConfigError(f"instance group '{shorten(group.name)}' is KIND_GPU, but this "
                              "server has no GPUs; use KIND_CPU")
        if group.count < 0:
            raise ConfigError(f"instance group '{shorten(group.name)}' has count {group.count}")
    instances = sum(max(1, g.count) for g in config.instance_group)
    if instances > MAX_INSTANCES:
        raise ConfigError(f"instance_group asks for {instances} instances, over the limit of "
                          f"{MAX_INSTANCES} per model")
    if config.batch_input or config.batch_output:
        raise ConfigError("batch_input and batch_output are not supported")

    batching = mbs > 0
    inputs = _plan_tensors("input", config.input, signature.inputs, signature, batching,
                           model_dir)
    outputs = _plan_tensors("output", config.output, signature.outputs, signature, batching,
                            model_dir)
    listed = {t.name for t in inputs}
    missing = [t for t in signature.inputs if t.served_name not in listed]
    if missing:
        raise ConfigError(f"the model's input {missing[0].describe()} is missing from the config")
    if not outputs:
        raise ConfigError("the config lists no output")
    step_rows = signature.step_rows if batching else 1
    return ServingPlan(config, tuple(inputs), tuple(outputs), mbs, step_rows,
                       signature.micro_batch or 1, signature.replication_factor, parameters)


def _plan_tensors(kind: str, entries, tensors: Sequence[ModelTensor], signature: Signature,
                  batching: bool, model_dir: Path | None) -> list[TensorPlan]:
    mc = _model_config_pb2()
    by_name = {t.served_name: t for t in tensors}
    plans = []
    seen = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"{kind} '{shorten(entry.name)}' is listed twice")
        seen.add(entry.name)
        tensor = by_name.get(entry.name)
        if tensor is None:
            other = f"; its {kind}s are {_described(tensors)}" if tensors else ""
            raise ConfigError(f"{kind} '{shorten(entry.name)}' is not an {kind} of the "
                              f"model{other}")
        ttype = _triton_type(tensor)
        stated = datatypes.by_config_enum(entry.data_type)
        if stated is not ttype and entry.data_type == mc.TYPE_STRING:
            raise ConfigError(
                f"{kind} '{entry.name}' has data_type TYPE_STRING (BYTES), but PopEF has no "
                f"string type: the model's anchor '{tensor.key}' is {tensor.dtype.name} "
                f"({ttype.config_name})")
        if stated is not ttype:
            raise ConfigError(
                f"{kind} '{entry.name}' has data_type "
                f"{datatypes.config_type_name(entry.data_type)} but the model's anchor "
                f"'{tensor.key}' is {tensor.dtype.name} ({ttype.config_name})")
        model_shape = _model_dims(signature, tensor, batching)
        dims = tuple(int(d) for d in entry.dims)
        shape = _check_dims(kind, entry, dims, tensor, model_shape, batching)
        labels: tuple[str, ...] = ()
        if kind == "output" and entry.label_filename and model_dir is not None:
            labels = _read_labels(model_dir, entry.label_filename)
        plans.append(TensorPlan(entry.name, tensor.runtime_name, tensor.key, ttype, dims, shape,
                                model_shape, tensor.per_replica, labels))
    return plans


def _check_dims(kind: str, entry, dims: tuple[int, ...], tensor: ModelTensor,
                model_shape: tuple[int, ...], batching: bool) -> tuple[int, ...]:
    why = (" (with max_batch_size > 0 the dims leave out the batch dimension)" if batching
           else " (with max_batch_size 0 the dims are the anchor's whole shape)")
    if not dims:
        raise ConfigError(f"{kind} '{entry.name}' has empty dims; use dims: [ 1 ] with "
                          "reshape: { shape: [ ] } for a scalar")
    if any(d < -1 or d == 0 for d in dims):
        raise ConfigError(f"{kind} '{entry.name}' has dims {list(dims)}: each must be positive "
                          "or -1")
    if entry.HasField("reshape"):
        target = tuple(int(d) for d in entry.reshape.shape)
        if target != model_shape:
            raise ConfigError(f"{kind} '{entry.name}' reshapes to {list(target)} but the model's "
                              f"anchor '{tensor.key}' is {tensor.anchor_text()}: expected "
                              f"reshape {list(model_shape)}{why}")
        if -1 in dims or math.prod(dims) != math.prod(target):
            raise ConfigError(f"{kind} '{entry.name}' has dims {list(dims)}, which cannot be "
                              f"reshaped to {list(target)}")
        return dims
    if len(dims) != len(model_shape) or any(d != -1 and d != m for d, m in zip(dims, model_shape)):
        raise ConfigError(f"{kind} '{entry.name}' has dims {list(dims)} but the model's anchor "
                          f"'{tensor.key}' is {tensor.anchor_text()}: expected dims "
                          f"{list(model_shape)}{why}")
    return model_shape


def _read_labels(model_dir: Path, label: str) -> tuple[str, ...]:
    what = f"label_filename '{shorten(label)}'"
    path = inside(model_dir, label, what)
    text = read_model_file(path, what, MAX_LABEL_FILE_BYTES)
    if text is None:
        raise ConfigError(f"{what} does not exist in the model folder '{model_dir.name}'")
    return tuple(line.rstrip("\r\n") for line in text.splitlines())


# -- generating a config ----------------------------------------------------------------------------

def generate_config(name: str, signature: Signature, max_batch_size: int | None = None,
                    *, dynamic_batching: bool | None = None, extra_parameters: bool = True):
    """A complete config for a model file: what ``popef triton-config`` prints.

    ``max_batch_size`` defaults to Graphcore's rule (micro batch × device iterations ×
    replicas), or 0 when the model has no batch dimension.
    """
    mc = _model_config_pb2()
    if max_batch_size is None:
        max_batch_size = signature.default_max_batch_size
    if max_batch_size < 0:
        raise ConfigError(f"max_batch_size must be >= 0, got {max_batch_size}")
    if max_batch_size > 0 and signature.micro_batch is None:
        raise ConfigError(f"max_batch_size {max_batch_size} needs a batch dimension, but "
                          f"{signature.batch_blocker}")
    config = mc.ModelConfig()
    config.name = name
    config.backend = SUPPORTED_BACKENDS[0]
    config.max_batch_size = max_batch_size
    batching = max_batch_size > 0
    for tensors, entries in ((signature.inputs, config.input), (signature.outputs, config.output)):
        for tensor in tensors:
            entry = entries.add()
            entry.name = tensor.served_name
            entry.data_type = datatypes.config_enum(_triton_type(tensor))
            _set_dims(entry, _model_dims(signature, tensor, batching))
    if dynamic_batching is None:
        dynamic_batching = max_batch_size > 1
    if dynamic_batching and batching:
        config.dynamic_batching.SetInParent()
    group = config.instance_group.add()
    group.kind = mc.ModelInstanceGroup.KIND_CPU
    group.count = 1
    if extra_parameters:
        config.parameters["synchronous_execution"].string_value = "1"
    return config


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _described(tensors: Iterable[ModelTensor]) -> str:
    return ", ".join(t.describe() for t in tensors)


def check_name_map_file(directory: Path) -> dict[str, str] | None:
    """The version folder's ``name_map.json``, or ``None`` when it has none."""
    path = directory / NAME_MAP_FILENAME
    return read_name_map(path) if regular_file(path, NAME_MAP_FILENAME) is not None else None
