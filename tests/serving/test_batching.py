"""Concurrency: many clients, dynamic batching, instance groups, the bounded queue."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .gates import DEADLINE, answer, gated, wait_until
from .test_protocol import grpc_input, http_input, rows


def test_concurrent_clients_get_their_own_answers(server, models):
    """8 clients (4 gRPC, 4 HTTP) × 10 requests of different batch sizes, all checked."""
    errors = []

    def client(k: int) -> None:
        use_grpc = k % 2 == 0
        c = (
            grpcclient.InferenceServerClient(server.url("grpc"))
            if use_grpc
            else httpclient.InferenceServerClient(server.url("http"))
        )
        try:
            for i in range(10):
                x = rows(1 + (k + i) % 8, seed=100 * k + i)
                make = grpc_input if use_grpc else http_input
                got = c.infer("simple", [make("x", x)]).as_numpy("probs")
                np.testing.assert_allclose(got, models["simple"].reference(x), rtol=1e-5, atol=1e-6)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads), "a client got no answer"
    assert not errors, errors[0]


def test_dynamic_batching_merges_concurrent_requests(server, http_client, models):
    """8 concurrent requests of batch 1 with preferred_batch_size 8 and an hour's queue delay:
    one execution of 8 rows, sent as soon as the eighth request arrived (waiting for the delay
    would outlast the clients' timeout), and every request still gets its own rows back."""
    before = http_client.get_inference_statistics("batched")["model_stats"][0]
    barrier = threading.Barrier(8)

    def one(k: int):
        client = grpcclient.InferenceServerClient(server.url("grpc"))
        try:
            x = rows(1, seed=k)
            barrier.wait(DEADLINE)
            result = client.infer("batched", [grpc_input("input", x)], client_timeout=DEADLINE)
            return x, result.as_numpy("out")
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for x, got in results:
        np.testing.assert_allclose(got, models["batched"].reference(x), rtol=1e-5, atol=1e-6)
    after = http_client.get_inference_statistics("batched")["model_stats"][0]
    requests = (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    )
    executions = after["execution_count"] - before["execution_count"]
    assert (requests, executions) == (8, 1)  # all eight in one execution
    assert 8 in {b["batch_size"] for b in after["batch_stats"]}


def test_instances_run_in_parallel(server):
    """Two instances: two requests execute at the same time (both wait at the gate at once)."""

    def one(k: int) -> None:
        client = grpcclient.InferenceServerClient(server.url("grpc"))
        try:
            client.infer("pair", [grpc_input("input", rows(1, k))], client_timeout=DEADLINE)
        finally:
            client.close()

    with ThreadPoolExecutor(2) as pool, gated(server.core.repository.get("pair")) as gate:
        answers = [pool.submit(one, k) for k in range(2)]
        gate.wait_entered(2)  # one instance after the other would never get here
        gate.open()
        for answer in answers:
            answer.result(DEADLINE)


def test_overload_answers_503_at_once(server):
    """One instance, at most 1 queued request: with one request executing and one queued,
    4 more simultaneous requests are refused while the execution is still held at the gate
    (refused without waiting for it); the two accepted ones then succeed."""
    slow = server.core.repository.get("slow")

    def one(k: int, barrier: threading.Barrier | None = None):
        client = httpclient.InferenceServerClient(server.url("http"), network_timeout=DEADLINE)
        try:
            if barrier is not None:
                barrier.wait(DEADLINE)
            try:
                client.infer("slow", [http_input("input", rows(1, k))])
                return ("ok",)
            except InferenceServerException as exc:
                return exc.status(), exc.message()
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool, gated(slow) as gate:
        accepted = [pool.submit(one, 0)]
        gate.wait_entered(1)  # executing
        accepted.append(pool.submit(one, 1))
        wait_until(lambda: slow.scheduler.queued == 1, "the second request is queued")
        barrier = threading.Barrier(4)
        extra = [pool.submit(one, k, barrier) for k in range(2, 6)]
        refused = [answer(f, "an answer while the execution is held") for f in extra]
        assert gate.entered == 1 and slow.scheduler.queued == 1  # still held, still queued
        gate.open()
        accepted = [f.result(DEADLINE) for f in accepted]
    assert accepted == [("ok",), ("ok",)]
    assert [status for status, _ in refused] == ["503"] * 4, refused
    assert all("queue of model 'slow' is full" in message for _, message in refused), refused


def test_request_timeout_in_the_queue(server):
    """A request whose timeout expires while it waits in the queue is refused."""
    slow = server.core.repository.get("slow")
    client = grpcclient.InferenceServerClient(server.url("grpc"))
    other = grpcclient.InferenceServerClient(server.url("grpc"))
    timeout_us = 50_000
    try:
        with ThreadPoolExecutor(2) as pool, gated(slow) as gate:
            first = pool.submit(
                client.infer, "slow", [grpc_input("input", rows(1))], client_timeout=DEADLINE
            )
            gate.wait_entered(1)  # the first request is executing
            refused = pool.submit(
                other.infer,
                "slow",
                [grpc_input("input", rows(1))],
                timeout=timeout_us,
                client_timeout=DEADLINE,
            )
            # queued (or already refused); its deadline is at most timeout_us after this
            wait_until(lambda: slow.scheduler.queued == 1 or refused.done(), "queued")
            queued_ns = time.perf_counter_ns()
            wait_until(
                lambda: time.perf_counter_ns() > queued_ns + timeout_us * 1000,
                "its timeout expired",
            )
            gate.open()
            first.result(DEADLINE)
            with pytest.raises(InferenceServerException, match="request timeout expired"):
                refused.result(DEADLINE)
    finally:
        client.close()
        other.close()


def test_asynchronous_execution_and_timeout_ns(server, models):
    """synchronous_execution "0": executions go through ModelRunner.execute_async; timeout_ns
    (20 ms) is the batching delay of a dynamic_batching block that sets none."""
    served = server.core.repository.get("async")
    assert served.scheduler.policy.max_queue_delay_ns == 20_000_000
    assert served.scheduler._execute_async is not None

    def one(k: int):
        client = grpcclient.InferenceServerClient(server.url("grpc"))
        try:
            x = rows(1 + k % 3, seed=k)
            return x, client.infer("async", [grpc_input("input", x)]).as_numpy("out")
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool:
        for x, got in pool.map(one, range(12)):
            np.testing.assert_allclose(got, models["async"].reference(x), rtol=1e-5, atol=1e-6)


def test_executor_from_the_config(grpc_client, http_client, models):
    x = rows(3)
    got = grpc_client.infer("ipu", [grpc_input("input", x)]).as_numpy("out")
    np.testing.assert_allclose(got, models["ipu"].reference(x), rtol=1e-5, atol=1e-6)
    entry = next(e for e in http_client.get_model_repository_index() if e["name"] == "no_executor")
    assert entry["state"] == "UNAVAILABLE" and "warp-drive" in entry["reason"]
