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

from .test_protocol import grpc_input, http_input, rows


def test_concurrent_clients_get_their_own_answers(server, models):
    """8 clients (4 gRPC, 4 HTTP) × 10 requests of different batch sizes, all checked."""
    errors = []

    def client(k: int) -> None:
        use_grpc = k % 2 == 0
        c = (grpcclient.InferenceServerClient(server.url("grpc")) if use_grpc
             else httpclient.InferenceServerClient(server.url("http")))
        try:
            for i in range(10):
                x = rows(1 + (k + i) % 8, seed=100 * k + i)
                make = grpc_input if use_grpc else http_input
                got = c.infer("simple", [make("x", x)]).as_numpy("probs")
                np.testing.assert_allclose(got, models["simple"].reference(x), rtol=1e-5,
                                           atol=1e-6)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]


def test_dynamic_batching_merges_concurrent_requests(server, http_client, models):
    """8 concurrent requests of batch 1 with preferred_batch_size 8: fewer executions than
    requests, and every request still gets its own rows back."""
    before = http_client.get_inference_statistics("batched")["model_stats"][0]
    barrier = threading.Barrier(8)

    def one(k: int):
        client = grpcclient.InferenceServerClient(server.url("grpc"))
        try:
            x = rows(1, seed=k)
            barrier.wait(10)
            return x, client.infer("batched", [grpc_input("input", x)]).as_numpy("out")
        finally:
            client.close()

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    elapsed = time.monotonic() - start
    for x, got in results:
        np.testing.assert_allclose(got, models["batched"].reference(x), rtol=1e-5, atol=1e-6)
    after = http_client.get_inference_statistics("batched")["model_stats"][0]
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 8
    assert executions < requests, (executions, requests)
    sizes = {b["batch_size"] for b in after["batch_stats"]}
    assert max(sizes) > 1
    # the preferred size (8) went out without waiting for the 1 s queue delay
    assert elapsed < 5


def test_instances_run_in_parallel(server):
    """Two instances of a model whose executions take 300 ms: two requests take ~300 ms."""
    def one(k: int) -> float:
        client = grpcclient.InferenceServerClient(server.url("grpc"))
        try:
            client.infer("pair", [grpc_input("input", rows(1, k))])
        finally:
            client.close()
        return time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        ends = list(pool.map(one, range(2)))
    assert max(ends) - start < 0.55, max(ends) - start


def test_overload_answers_503_quickly(server, http_client):
    """One instance, 400 ms per execution, at most 1 queued request: of 6 simultaneous
    requests, at most 2 run (one executing, one queued); the rest are refused at once."""
    outcomes = []
    barrier = threading.Barrier(6)

    def one(k: int) -> None:
        client = httpclient.InferenceServerClient(server.url("http"))
        try:
            barrier.wait(10)
            t0 = time.monotonic()
            try:
                client.infer("slow", [http_input("input", rows(1, k))])
                outcomes.append(("ok", time.monotonic() - t0))
            except InferenceServerException as exc:
                outcomes.append((exc.status(), time.monotonic() - t0, exc.message()))
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(6)))
    refused = [o for o in outcomes if o[0] == "503"]
    ok = [o for o in outcomes if o[0] == "ok"]
    assert len(ok) + len(refused) == 6, outcomes
    assert 1 <= len(ok) <= 2 and len(refused) >= 4, outcomes
    assert all("queue of model 'slow' is full" in o[2] for o in refused)
    assert all(o[1] < 0.35 for o in refused), outcomes  # refused without waiting


def test_request_timeout_in_the_queue(server):
    """A request whose timeout expires while it waits in the queue is refused."""
    client = grpcclient.InferenceServerClient(server.url("grpc"))
    other = grpcclient.InferenceServerClient(server.url("grpc"))
    try:
        first = threading.Thread(target=lambda: client.infer("slow", [grpc_input("input", rows(1))]))
        first.start()
        time.sleep(0.1)  # the first request is executing (400 ms)
        with pytest.raises(InferenceServerException, match="request timeout expired"):
            other.infer("slow", [grpc_input("input", rows(1))], timeout=50_000)  # 50 ms
        first.join(10)
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
    entry = next(e for e in http_client.get_model_repository_index()
                 if e["name"] == "no_executor")
    assert entry["state"] == "UNAVAILABLE" and "warp-drive" in entry["reason"]
