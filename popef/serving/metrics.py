"""Prometheus metrics with Triton's names (``docs/user_guide/metrics.md``).

Served in the Prometheus text format (version 0.0.4) at ``:<metrics-port>/metrics``. The
counters are labelled ``{model="…",version="…"}`` and read from the same statistics as the
statistics extension, so the two always agree::

    nv_inference_request_success      requests that succeeded
    nv_inference_request_failure      requests that failed
    nv_inference_count                samples inferred (a request of batch 4 counts 4)
    nv_inference_exec_count           model executions (a dynamic batch counts 1)
    nv_inference_request_duration_us  cumulative end-to-end time of requests in the server
    nv_inference_queue_duration_us    cumulative time requests waited in the queue
    nv_inference_compute_input_duration_us / _infer_ / _output_   cumulative compute time
    nv_inference_pending_request_count (gauge)  requests queued now

A model name is untrusted (a folder name): its label value is the name with every
non-printable character (ESC, BEL, CR, LF, bidi overrides...) written as a visible escape and
backslashes doubled (:func:`popef.escaping.escape_text`, as ``popef_dump`` writes names), so
no raw control character reaches a scraper's terminal or page; a printable name is unchanged.

The exposition is written here rather than with ``prometheus_client``, whose text output adds
``_total`` to counter names, which would break dashboards built for Triton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..escaping import escape_text

if TYPE_CHECKING:
    from .core import InferenceCore

__all__ = ["METRICS", "render_metrics"]

# name, type, help, how to read it from a statistics snapshot (or "pending")
METRICS = (
    (
        "nv_inference_request_success",
        "counter",
        "Number of successful inference requests, all batch sizes",
        lambda s: s["inference_stats"]["success"]["count"],
    ),
    (
        "nv_inference_request_failure",
        "counter",
        "Number of failed inference requests, all batch sizes",
        lambda s: s["inference_stats"]["fail"]["count"],
    ),
    (
        "nv_inference_count",
        "counter",
        "Number of inferences performed (does not include cached requests)",
        lambda s: s["inference_count"],
    ),
    (
        "nv_inference_exec_count",
        "counter",
        "Number of model executions performed (does not include cached requests)",
        lambda s: s["execution_count"],
    ),
    (
        "nv_inference_request_duration_us",
        "counter",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        lambda s: (
            (s["inference_stats"]["success"]["ns"] + s["inference_stats"]["fail"]["ns"]) // 1000
        ),
    ),
    (
        "nv_inference_queue_duration_us",
        "counter",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        lambda s: s["inference_stats"]["queue"]["ns"] // 1000,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "counter",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        lambda s: s["inference_stats"]["compute_input"]["ns"] // 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "counter",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        lambda s: s["inference_stats"]["compute_infer"]["ns"] // 1000,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "counter",
        "Cumulative inference compute output duration in microseconds (does not include cached "
        "requests)",
        lambda s: s["inference_stats"]["compute_output"]["ns"] // 1000,
    ),
    (
        "nv_inference_pending_request_count",
        "gauge",
        "Instantaneous number of pending requests awaiting execution per-model.",
        "pending",
    ),
)


def _label(value: str) -> str:
    """A label value in the exposition: ``value`` escaped by :func:`escape_text` (which leaves
    no line break), then in the format's own escapes for backslash and quote."""
    return escape_text(value).replace("\\", "\\\\").replace('"', '\\"')


def render_metrics(core: InferenceCore) -> str:
    """The Prometheus text exposition of every loaded model version."""
    models = core.repository.served_models()
    rows = [(m, m.stats.snapshot()) for m in models]
    lines = []
    for name, kind, help_text, read in METRICS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for model, snapshot in rows:
            value = model.scheduler.queued if read == "pending" else read(snapshot)
            labels = f'model="{_label(model.name)}",version="{model.version}"'
            lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"
