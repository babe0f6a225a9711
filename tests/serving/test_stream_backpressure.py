"""``ModelStreamInfer`` reads no further than its bound of requests in flight, and a cancelled
stream lets go of its reader thread and its grpc worker.

The servicer runs over a held core: a stand-in for :class:`InferenceCore` whose responses the
test releases one by one, so that "in flight" is something the test controls and counts.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from .gates import DEADLINE

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("tritonclient.grpc.service_pb2")
pb_grpc = pytest.importorskip("tritonclient.grpc.service_pb2_grpc")

from popef.serving.grpc_servicer import InferenceServicer
from popef.serving.protocol import InferResponse, OutputTensor


class HeldCore:
    """``infer`` answers with futures that stay pending until the test resolves them."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.pending: list[concurrent.futures.Future] = []
        self.calls = 0
        self.most_pending = 0
        self.reader: threading.Thread | None = None

    def live(self) -> bool:
        return True

    def infer(self, request, *, inline: bool = False) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.changed:
            self.pending.append(future)
            self.calls += 1
            self.most_pending = max(self.most_pending, len(self.pending))
            self.reader = threading.current_thread()
            self.changed.notify_all()
        return future

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout=DEADLINE):
                raise AssertionError(
                    f"timed out waiting for {what}: {self.calls} calls, {len(self.pending)} pending"
                )

    def resolve_oldest(self) -> None:
        with self.changed:
            future = self.pending.pop(0)
        output = OutputTensor("y", "FP32", [1], np.zeros(1, np.float32))
        future.set_result(InferResponse("m", "1", outputs=[output]))

    def resolve_all(self) -> None:
        while self.pending:
            self.resolve_oldest()


@pytest.fixture()
def held():
    """``(core, stub, server)``: a servicer over a held core, bound of 4 per stream, on a
    grpc server with a single worker (a stream that does not let go blocks every other call)."""
    core = HeldCore()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(1))
    InferenceServicer(core, stream_in_flight=4).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield core, pb_grpc.GRPCInferenceServiceStub(channel), server
    core.resolve_all()
    channel.close()
    server.stop(None)


def requests(n: int, sent: list[int]) -> Iterator:
    for i in range(n):
        sent[0] += 1
        yield pb.ModelInferRequest(model_name="m", id=str(i))


def test_a_stream_reads_no_more_than_its_bound(held):
    core, stub, _ = held
    total, bound = 40, 4
    sent = [0]
    call = stub.ModelStreamInfer(requests(total, sent))
    answered: list = []
    consumer = threading.Thread(target=lambda: answered.extend(call), daemon=True)
    consumer.start()
    for resolved in range(total):
        # the reader fills the bound again after each response, and never goes past it
        full = min(bound, total - resolved)
        core.wait_for(
            lambda full=full: len(core.pending) >= full or core.most_pending > bound,
            f"{full} requests in flight",
        )
        assert core.most_pending <= bound, (
            f"{core.most_pending} requests in flight on one stream, bound {bound} "
            f"(client sent {sent[0]})"
        )
        core.resolve_oldest()
    consumer.join(DEADLINE)
    assert not consumer.is_alive()
    assert len(answered) == total
    assert all(not r.error_message for r in answered)


def test_cancelling_a_full_stream_releases_its_reader_and_worker(held):
    core, stub, _ = held
    sent = [0]
    call = stub.ModelStreamInfer(requests(100, sent))
    core.wait_for(lambda: len(core.pending) >= 4, "a full stream")
    reader = core.reader
    assert reader is not None and reader.is_alive()
    call.cancel()
    # the reader waiting for room ends at once, with nothing answered
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert core.calls == 4
    # the single grpc worker is free again: another call gets through
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=DEADLINE).live


def test_a_stream_that_finishes_leaves_no_reader(held):
    core, stub, _ = held
    sent = [0]
    call = stub.ModelStreamInfer(requests(3, sent))
    core.wait_for(lambda: core.calls == 3, "three requests")
    core.resolve_all()
    assert len(list(call)) == 3
    core.reader.join(DEADLINE)
    assert not core.reader.is_alive()
