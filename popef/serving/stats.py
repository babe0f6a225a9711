"""Per model version statistics: what the statistics extension and the metrics report.

The counters follow Triton's (``docs/user_guide/metrics.md`` and ``ModelStatistics`` in
``grpc_service.proto``): a *request* is one inference request, an *inference* is one sample
(a request of batch 4 counts 4), an *execution* is one run of the model (a dynamic batch of
several requests counts 1). Durations are nanoseconds here; the metrics show microseconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

__all__ = ["Duration", "ModelStats"]


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class ModelStats:
    """Thread-safe counters of one model version."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.batches: dict[int, BatchStats] = {}

    def record_execution(
        self, batch_size: int, input_ns: int, infer_ns: int, output_ns: int, requests: int
    ) -> None:
        """One execution of ``batch_size`` samples made of ``requests`` requests."""
        with self._lock:
            self.execution_count += 1
            stats = self.batches.get(batch_size)
            if stats is None:
                stats = self.batches[batch_size] = BatchStats()
            stats.compute_input.add(input_ns)
            stats.compute_infer.add(infer_ns)
            stats.compute_output.add(output_ns)
            # every request of the execution accrues the execution's compute time
            self.compute_input.add(input_ns * requests, requests)
            self.compute_infer.add(infer_ns * requests, requests)
            self.compute_output.add(output_ns * requests, requests)

    def record_queue(self, ns: int) -> None:
        with self._lock:
            self.queue.add(ns)

    def record_success(self, samples: int, total_ns: int) -> None:
        with self._lock:
            self.success.add(total_ns)
            self.inference_count += samples
            self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.fail.add(total_ns)
            self.last_inference_ms = int(time.time() * 1000)

    def snapshot(self) -> dict:
        """A consistent copy as plain data, in the shape of Triton's statistics JSON."""
        with self._lock:

            def d(x: Duration) -> dict:
                return {"count": x.count, "ns": x.ns}

            return {
                "name": self.name,
                "version": str(self.version),
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": d(self.success),
                    "fail": d(self.fail),
                    "queue": d(self.queue),
                    "compute_input": d(self.compute_input),
                    "compute_infer": d(self.compute_infer),
                    "compute_output": d(self.compute_output),
                    "cache_hit": {"count": 0, "ns": 0},
                    "cache_miss": {"count": 0, "ns": 0},
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": d(b.compute_input),
                        "compute_infer": d(b.compute_infer),
                        "compute_output": d(b.compute_output),
                    }
                    for size, b in sorted(self.batches.items())
                ],
            }


def now_ns() -> int:
    return time.perf_counter_ns()
