"""What a Ray Serve application of a model repository is made of: plain, picklable settings.

Nothing here imports Ray, so the rules (replicas from ``instance_group``, autoscaling from
config ``parameters`` and flags, the builder's ``key=value`` arguments) are testable without
it. docs/scale-out.md describes them for users.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ...escaping import shorten
from ...options import parse_bool
from ...servable import CONFIG_FILENAME, ConfigError, read_config
from ...servable.errors import ServingError, invalid
from ..options import server_defaults

__all__ = [
    "APP_NAME",
    "AUTOSCALING_PARAMETERS",
    "DEPLOYMENT_NAME",
    "INGRESS_NAME",
    "AppOptions",
    "Scaling",
    "ingress_options",
    "scaling_of_repositories",
]

#: the Ray Serve application and deployment names (``serve status`` shows them)
APP_NAME = "popef"
DEPLOYMENT_NAME = "PopefServer"
#: the thin deployment in front of the replicas (one replica, on the head node)
INGRESS_NAME = "PopefIngress"
#: requests the ingress forwards at once (it waits on the replicas, which bound the work)
INGRESS_MAX_ONGOING_REQUESTS = 4096

#: config.pbtxt ``parameters`` read by the Ray application, with the Scaling field each sets
AUTOSCALING_PARAMETERS = {
    "ray_min_replicas": "min_replicas",
    "ray_max_replicas": "max_replicas",
    "ray_target_ongoing_requests": "target_ongoing_requests",
    "ray_max_ongoing_requests": "max_ongoing_requests",
}
#: requests a replica takes at once: enough for its dynamic batcher to fill batches
DEFAULT_MAX_ONGOING_REQUESTS = 32
#: ``popef serve``'s defaults, which the application's options share
_SERVER = server_defaults()
#: the largest replica count accepted (a typo such as count: 10000 is refused, not attempted)
MAX_REPLICAS = 1024
_COUNT_RANGES = {
    "num_replicas": (1, MAX_REPLICAS),
    "min_replicas": (0, MAX_REPLICAS),
    "max_replicas": (1, MAX_REPLICAS),
    "max_ongoing_requests": (1, 2**20),
}


@dataclass(frozen=True)
class Scaling:
    """How many replicas serve the repository.

    Fixed at ``num_replicas`` unless ``max_replicas`` is set: then Ray autoscales between
    ``min_replicas`` (default 1) and ``max_replicas`` on ``target_ongoing_requests`` per replica
    (Ray's default 2). Each replica takes at most ``max_ongoing_requests`` at once and reserves
    ``num_cpus`` of its node.
    """

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS
    num_cpus: float = 1.0

    def __post_init__(self) -> None:
        for name, (low, high) in _COUNT_RANGES.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise invalid(f"{name} must be a whole number in [{low}, {high}], got {value}")
        if self.min_replicas is not None and self.max_replicas is None:
            raise invalid(
                f"min_replicas ({self.min_replicas}) needs max_replicas: autoscaling "
                "runs between the two"
            )
        if self.max_replicas is not None and (self.min_replicas or 1) > self.max_replicas:
            raise invalid(
                f"min_replicas ({self.min_replicas}) must be at most max_replicas "
                f"({self.max_replicas})"
            )
        target = self.target_ongoing_requests
        if target is not None and not (math.isfinite(target) and target > 0):
            raise invalid(f"target_ongoing_requests must be a number > 0, got {target}")
        if not (math.isfinite(self.num_cpus) and self.num_cpus >= 0):
            raise invalid(f"num_cpus must be a number >= 0, got {self.num_cpus}")

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    def deployment_options(self) -> dict:
        """Keyword arguments of Ray's ``Deployment.options``."""
        options: dict = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus},
        }
        if self.autoscaling:
            config = {
                "min_replicas": 1 if self.min_replicas is None else self.min_replicas,
                "max_replicas": self.max_replicas,
                # Ray's default look-back (30 s) hides load for half a minute; replicas
                # report every 10 s by default: these follow load within seconds
                "upscale_delay_s": 3.0,
                "downscale_delay_s": 30.0,
            }
            if self.target_ongoing_requests is not None:
                config["target_ongoing_requests"] = self.target_ongoing_requests
            options["autoscaling_config"] = config
        else:
            options["num_replicas"] = self.num_replicas
        return options


def ingress_options() -> dict:
    """Keyword arguments of Ray's ``Deployment.options`` for the ingress: one replica on the
    head node (which a cluster cannot lose anyway: it holds Ray's control store), no CPU of
    its own."""
    return {
        "num_replicas": 1,
        "max_ongoing_requests": INGRESS_MAX_ONGOING_REQUESTS,
        "ray_actor_options": {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
    }


@dataclass(frozen=True)
class AppOptions:
    """Everything a replica needs to serve the repository, as ``popef serve`` takes it.

    Defaults are ``popef serve``'s (:class:`~popef.serving.options.ServerOptions`).
    ``scaling`` fields given here (not None) override what the models' configs say.
    """

    model_repositories: tuple[str, ...]
    executor: str = _SERVER.executor
    executor_options: Mapping[str, str] = field(default_factory=dict)
    auto_complete: bool = _SERVER.auto_complete
    default_max_batch_size: int | None = _SERVER.default_max_batch_size
    max_queue_size: int = _SERVER.max_queue_size
    model_config_name: str | None = _SERVER.model_config_name
    http_max_input_size: int = _SERVER.http_max_input_size
    strict_readiness: bool = _SERVER.strict_readiness
    server_id: str = _SERVER.server_id
    #: put the retrying ingress in front of the replicas (no request lost to a replica's or
    #: node's death, one more hop per request); False: Ray's proxies call the replicas
    retry_lost_requests: bool = True
    # overrides of the configs' scaling (flags and builder arguments)
    num_replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    max_ongoing_requests: int | None = None
    num_cpus: float | None = None

    def __post_init__(self) -> None:
        if not self.model_repositories:
            raise invalid("a model repository is needed: model_repository=DIR")
        object.__setattr__(
            self,
            "model_repositories",
            tuple(str(Path(p).resolve()) for p in self.model_repositories),
        )

    @classmethod
    def from_args(cls, args: Mapping[str, object]) -> AppOptions:
        """Options from the ``key=value`` arguments of ``serve run popef.serving.ray:app``
        (or a ``serve deploy`` config's ``args``): strings, or values of the right type."""
        known = {f.name: f for f in fields(cls)}
        values: dict = {}
        for key, value in args.items():
            name = str(key).replace("-", "_")
            if name == "model_repository":
                name = "model_repositories"
            if name not in known:
                raise invalid(
                    f"unknown argument '{shorten(str(key))}': expected one of "
                    f"{', '.join(_ARGUMENTS)}"
                )
            values[name] = _convert(name, value)
        if "model_repositories" not in values:
            raise invalid("a model repository is needed: model_repository=DIR")
        return cls(**values)

    def scaling(self) -> Scaling:
        """The models' scaling (:func:`scaling_of_repositories`) with this object's overrides."""
        base = scaling_of_repositories(self.model_repositories, self.model_config_name)
        overrides = {
            name: getattr(self, name) for name in _SCALING_FIELDS if getattr(self, name) is not None
        }
        if "num_replicas" in overrides and "max_replicas" not in overrides:
            # a fixed count asked for by the user turns config-driven autoscaling off
            base = replace(base, min_replicas=None, max_replicas=None)
        try:
            return replace(base, **overrides)
        except ServingError as exc:
            raise invalid(f"scaling: {exc.message}") from None


_SCALING_FIELDS = tuple(f.name for f in fields(Scaling))
#: the builder's argument names: AppOptions' fields, model_repositories spelt as given
_ARGUMENTS = tuple(
    "model_repository" if f.name == "model_repositories" else f.name for f in fields(AppOptions)
)
_INTS = {
    "default_max_batch_size",
    "max_queue_size",
    "http_max_input_size",
    "num_replicas",
    "min_replicas",
    "max_replicas",
    "max_ongoing_requests",
}
_FLOATS = {"target_ongoing_requests", "num_cpus"}
_BOOLS = {"auto_complete", "strict_readiness", "retry_lost_requests"}


def _convert(name: str, value: object) -> object:
    """A builder argument as its field's type; a clear error otherwise."""
    shown = shorten(repr(value), 80)
    if name == "model_repositories":
        if isinstance(value, str):
            return tuple(p for p in value.split(",") if p)
        if isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
            return tuple(value)
        raise invalid(
            f"model_repository must be a folder (or folders separated by ','), got {shown}"
        )
    if name == "executor_options":
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(value, str):  # "k=v,k=v"
            pairs = [item.partition("=") for item in value.split(",") if item]
            if all(sep and key for key, sep, _ in pairs):
                return {key: v for key, _, v in pairs}
        raise invalid(f"executor_options must be key=value pairs separated by ',', got {shown}")
    if name in _BOOLS:
        return parse_bool(value, name, invalid)
    if name in _INTS:
        try:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(str(value).strip())
        except ValueError:
            raise invalid(f"{name} must be a whole number, got {shown}") from None
    if name in _FLOATS:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(str(value).strip())
        except ValueError:
            raise invalid(f"{name} must be a number, got {shown}") from None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string, got {shown}")
    return value


def scaling_of_repositories(repositories, config_name: str | None = None) -> Scaling:
    """Replicas and autoscaling as the models' configs ask.

    One deployment serves every model of the repositories, so it takes the largest ask of
    any model: ``instance_group`` counts (summed over a model's groups) give ``num_replicas``;
    the ``parameters`` ``ray_min_replicas``, ``ray_max_replicas``,
    ``ray_target_ongoing_requests`` and ``ray_max_ongoing_requests`` set autoscaling. A model
    whose config cannot be read is left out here (its replicas report why it is not ready).
    """
    asks: dict[str, list[tuple[float, str]]] = {}
    replicas = 1
    for model, directory in _model_folders(repositories):
        try:
            config, _ = read_config(directory, config_name)
        except ConfigError:
            continue
        if config is None:
            continue
        count = sum(max(1, group.count) for group in config.instance_group)
        replicas = max(replicas, count)
        for key, target in AUTOSCALING_PARAMETERS.items():
            if key in config.parameters:
                text = config.parameters[key].string_value
                asks.setdefault(target, []).append(
                    (_parameter_number(model, key, text, target), model)
                )
    values: dict = {}
    for target, found in asks.items():
        # the most capacity any model asks for; the lowest target keeps replicas least busy
        values[target] = (min if target == "target_ongoing_requests" else max)(found)[0]
        if target != "target_ongoing_requests":
            values[target] = int(values[target])
    try:
        return Scaling(num_replicas=replicas, **values)
    except ServingError as exc:
        raise invalid(f"{CONFIG_FILENAME} parameters: {exc.message}") from None


def _parameter_number(model: str, key: str, text: str, target: str) -> float:
    try:
        value = float(text.strip()) if target == "target_ongoing_requests" else int(text.strip())
    except ValueError:
        kind = "a number" if target == "target_ongoing_requests" else "a whole number"
        raise invalid(
            f"model '{shorten(model)}': parameter {key} must be {kind}, got \"{shorten(text, 80)}\""
        ) from None
    return value


def _model_folders(repositories):
    """``(name, folder)`` of every model folder, first repository first (as the server)."""
    seen: set[str] = set()
    for root in repositories:
        root = Path(root)
        if not root.is_dir():
            raise invalid(f"model repository '{shorten(str(root))}' is not a folder")
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir() or entry.name in seen:
                continue
            seen.add(entry.name)
            yield entry.name, entry
