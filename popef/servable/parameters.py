"""The config ``parameters`` this server reads (docs/serving.md, "Parameters")."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..options import parse_bool
from .errors import ConfigError

__all__ = ["DEFAULT_EXECUTOR", "MAX_DELAY_NS", "ModelParameters"]

#: the executor of a model whose config names none (``parameters { key: "executor" }``)
DEFAULT_EXECUTOR = "cpu"
#: the longest wait a config may ask for, in nanoseconds (one day): a batching delay
#: (``max_queue_delay_microseconds``, ``timeout_ns``) or an execution's test delay
#: (``execute_delay_ms`` × ``instance_wise_delay_multiplier``); longer is refused at load
MAX_DELAY_NS = 86_400 * 10**9


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
        options = {
            k[len("executor.") :]: values.pop(k) for k in list(values) if k.startswith("executor.")
        }
        sync = parse_bool(
            values.pop("synchronous_execution", "1"), "parameter synchronous_execution", ConfigError
        )
        timeout = values.pop("timeout_ns", None)
        timeout_ns = _int_parameter("timeout_ns", timeout) if timeout is not None else None
        queue = values.pop("max_queue_size", None)
        max_queue = _int_parameter("max_queue_size", queue) if queue is not None else None
        delay = _int_parameter("execute_delay_ms", values.pop("execute_delay_ms", "0"))
        multiplier = _int_parameter(
            "instance_wise_delay_multiplier", values.pop("instance_wise_delay_multiplier", "0")
        )
        parameters = cls(
            executor, options, sync, timeout_ns, max_queue, delay, multiplier, tuple(sorted(values))
        )
        parameters._check_delays(sum(max(1, g.count) for g in config.instance_group) or 1)
        return parameters

    def _check_delays(self, instances: int) -> None:
        """Refuse a wait over MAX_DELAY_NS (a longer one cannot even be waited for: Python's
        ``threading.TIMEOUT_MAX``), naming the parameters that ask for it."""
        if self.timeout_ns is not None and self.timeout_ns > MAX_DELAY_NS:
            raise ConfigError(
                f"parameter timeout_ns must be at most {MAX_DELAY_NS} (one day), "
                f"got {self.timeout_ns}"
            )
        longest_ms = self.execute_delay_ms * max(
            self.instance_wise_delay_multiplier * (instances - 1), 1
        )
        if longest_ms * 10**6 > MAX_DELAY_NS:
            how = (
                f"parameter execute_delay_ms {self.execute_delay_ms}"
                if longest_ms == self.execute_delay_ms
                else f"parameters execute_delay_ms {self.execute_delay_ms} × "
                f"instance_wise_delay_multiplier {self.instance_wise_delay_multiplier} × "
                f"instance {instances - 1}"
            )
            raise ConfigError(
                f"{how} asks for a delay of {longest_ms} ms per execution: "
                f"expected at most {MAX_DELAY_NS // 10**6} ms (one day)"
            )


def _int_parameter(name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f'parameter {name} must be a whole number, got "{text}"') from None
    if value < 0:
        raise ConfigError(f"parameter {name} must be >= 0, got {value}")
    return value
