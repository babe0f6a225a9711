"""Delays and unloads: limits checked at load, workers that never die, unloads that never
hold the repository (issue 11: a huge queue delay killed the worker; a slow execution held
every load and unload for 120 s)."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from popef.servable.errors import ServingError
from popef.serving import ModelRepository
from popef.serving.scheduler import BatchPolicy, Execution, Scheduler, Work
from popef.serving.stats import ModelStats, now_ns

from .conftest import config, write_model
from .gates import DEADLINE, gated, wait_until


def _parameters(**values: str) -> str:
    entries = ",\n  ".join(
        f'{{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in values.items()
    )
    return f"parameters [ {entries} ]"


@pytest.mark.parametrize(
    "extra, reason",
    [
        (
            "dynamic_batching { max_queue_delay_microseconds: 10000000000000000 }",
            "dynamic_batching max_queue_delay_microseconds must be at most 86400000000 (one day), "
            "got 10000000000000000",
        ),
        (
            "dynamic_batching { }\n" + _parameters(timeout_ns="100000000000000000000"),
            "parameter timeout_ns must be at most 86400000000000 (one day), "
            "got 100000000000000000000",
        ),
        (
            _parameters(execute_delay_ms=str(10**30)),
            f"parameter execute_delay_ms {10**30} asks for a delay of {10**30} ms per execution: "
            "expected at most 86400000 ms (one day)",
        ),
        (
            "instance_group [ { kind: KIND_CPU count: 3 } ]\n"
            + _parameters(execute_delay_ms="3600000", instance_wise_delay_multiplier="20"),
            "parameters execute_delay_ms 3600000 × instance_wise_delay_multiplier 20 × instance 2 "
            "asks for a delay of 144000000 ms per execution: "
            "expected at most 86400000 ms (one day)",
        ),
    ],
)
def test_a_delay_over_the_limit_makes_the_model_unavailable(tmp_path, extra, reason):
    write_model(tmp_path, "m", config("m", extra=extra))
    repository = ModelRepository(tmp_path)
    repository.load_all()
    record = repository.record("m")
    assert record.state == "UNAVAILABLE"
    assert reason in record.reason
    repository.close()


def test_limits_are_inclusive(tmp_path):
    write_model(
        tmp_path,
        "m",
        config(
            "m",
            extra=(
                "dynamic_batching { max_queue_delay_microseconds: 86400000000 }\n"
                + _parameters(execute_delay_ms="86400000", timeout_ns="86400000000000")
            ),
        ),
    )
    repository = ModelRepository(tmp_path)
    repository.load_all()
    assert repository.record("m").state == "READY"
    repository.close(timeout=DEADLINE)


def test_the_load_api_refuses_a_delay_over_the_limit(http_client):
    with pytest.raises(
        InferenceServerException, match="max_queue_delay_microseconds must be at most"
    ) as info:
        http_client.load_model(
            "simple",
            config=json.dumps(
                {
                    "max_batch_size": 8,
                    "dynamic_batching": {"max_queue_delay_microseconds": "10000000000000000"},
                }
            ),
        )
    assert info.value.status() == "400"
    assert http_client.is_model_ready("simple")  # a failed reload keeps it serving


# -- the scheduler on its own ------------------------------------------------------------------


def _echo(instance: int, inputs, rows: int) -> Execution:
    return Execution(dict(inputs), 0, 0)


def _scheduler(policy: BatchPolicy, max_batch_size: int = 2) -> Scheduler:
    return Scheduler(
        "m",
        instances=1,
        execute=_echo,
        max_batch_size=max_batch_size,
        policy=policy,
        max_queue_size=16,
        stats=ModelStats("m", 1),
    )


def _work(value: float) -> Work:
    return Work({"x": np.full((1, 2), value, np.float32)}, 1, now_ns())


def test_a_queue_delay_beyond_what_a_thread_can_wait_keeps_the_worker_alive():
    """Built directly (no config check), a delay of 10**25 ns: the worker waits in steps
    instead of dying of OverflowError, and a full batch still runs."""
    scheduler = _scheduler(BatchPolicy(max_queue_delay_ns=10**25))
    try:
        first = scheduler.submit(_work(1))
        wait_until(lambda: scheduler.executing == 1, "the worker gathering a batch")
        second = scheduler.submit(_work(2))
        assert first.result(DEADLINE)["x"].tolist() == [[1, 1]]
        assert second.result(DEADLINE)["x"].tolist() == [[2, 2]]
    finally:
        assert scheduler.close(timeout=DEADLINE)


def test_an_error_while_gathering_fails_that_batch_and_the_worker_goes_on(monkeypatch, caplog):
    scheduler = _scheduler(BatchPolicy(max_queue_delay_ns=0), max_batch_size=1)
    fit = scheduler._fit
    calls = []

    def failing_once(preferred):
        calls.append(preferred)
        if len(calls) == 1:
            raise OverflowError("timestamp out of range for platform time_t")
        return fit(preferred)

    monkeypatch.setattr(scheduler, "_fit", failing_once)
    try:
        failed = scheduler.submit(_work(1))
        with pytest.raises(
            ServingError,
            match="model 'm' failed to gather a batch: OverflowError: timestamp out of range",
        ):
            failed.result(DEADLINE)
        assert scheduler.submit(_work(2)).result(DEADLINE)["x"].tolist() == [[2, 2]]
    finally:
        assert scheduler.close(timeout=DEADLINE)
    assert "scheduler of model 'm' failed to gather a batch" in caplog.text


# -- unloading ---------------------------------------------------------------------------------


def _repository(tmp_path, **models: str) -> ModelRepository:
    for name, extra in models.items():
        write_model(tmp_path, name, config(name, max_batch_size=1, extra=extra))
    repository = ModelRepository(tmp_path)
    repository.load_all()
    for name in models:
        assert repository.record(name).state == "READY", repository.record(name).reason
    return repository


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_unload_ends_an_execute_delay(tmp_path, caplog):
    """An hour's execute delay: the unload cuts it short and the request still gets its
    answer (before: the unload waited 120 s, then said "successfully unloaded" regardless)."""
    caplog.set_level(logging.INFO, logger="popef.serving")
    repository = _repository(tmp_path, slow=_parameters(execute_delay_ms="3600000"))
    served = repository.get("slow")
    x = np.ones((1, 4), np.float32)
    future = served.submit({"input": x}, 1, arrival_ns=now_ns())
    wait_until(lambda: served.scheduler.executing == 1, "the request in its execute delay")
    unload = _in_thread(lambda: repository.unload("slow"))
    unload.join(DEADLINE)
    assert not unload.is_alive(), f"the unload did not end within {DEADLINE:g} s"
    assert future.result(DEADLINE)["out"].shape == (1, 3)
    assert "successfully unloaded 'slow' version 1" in caplog.text
    assert repository.record("slow").state == "UNAVAILABLE"


def test_a_draining_model_does_not_hold_other_loads(tmp_path):
    """While model 'a' drains an execution (held at a gate), 'b' loads and unloads."""
    repository = _repository(tmp_path, a="", b="")
    served = repository.get("a")
    with gated(served) as gate:
        future = served.submit({"input": np.ones((1, 4), np.float32)}, 1, arrival_ns=now_ns())
        gate.wait_entered(1)
        unload_a = _in_thread(lambda: repository.unload("a"))
        wait_until(
            lambda: repository.record("a").versions[1].state == "UNLOADING", "model 'a' unloading"
        )
        others = _in_thread(lambda: (repository.unload("b"), repository.load("b")))
        others.join(DEADLINE)
        assert not others.is_alive(), "loading 'b' waited for 'a' to drain"
        assert unload_a.is_alive()  # its execution is still at the gate
        assert repository.record("b").state == "READY"
    unload_a.join(DEADLINE)
    assert not unload_a.is_alive()
    assert future.result(DEADLINE)["out"].shape == (1, 3)
    repository.close(timeout=DEADLINE)


def test_an_unload_that_times_out_says_so(tmp_path, caplog):
    """An execution outlives the unload's timeout: the log says it is still running, and
    "successfully unloaded" only once it has ended."""
    caplog.set_level(logging.INFO, logger="popef.serving")
    repository = _repository(tmp_path, stuck="")
    served = repository.get("stuck")
    with gated(served) as gate:
        future = served.submit({"input": np.ones((1, 4), np.float32)}, 1, arrival_ns=now_ns())
        gate.wait_entered(1)
        repository.close(timeout=0)
        assert "unloading 'stuck' version 1: an execution still runs after 0 s" in caplog.text
        assert "successfully unloaded 'stuck'" not in caplog.text
    assert future.result(DEADLINE)["out"].shape == (1, 3)
    wait_until(
        lambda: "successfully unloaded 'stuck' version 1 (its last execution ended)" in caplog.text,
        "the unload to finish once the execution ended",
    )
