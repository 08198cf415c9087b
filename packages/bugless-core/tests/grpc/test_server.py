"""The runner over plaintext: calls, caller context, health, drain, errors, metrics."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc_test_server import (
    DELAY_KEY,
    FAIL_KEY,
    HOLD_KEY,
    NOT_SERVING,
    SERVING,
    OpenChannel,
    SlowModel,
    StartRunner,
    health_status,
)
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.check import ServiceStatus
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bugless_core.errors import Unavailable, from_grpc_error
from bugless_core.grpc import GrpcServerSettings, TransferServerSettings
from bugless_proto import v1
from bugless_testing.polling import eventually

MODEL = "bugless.v1.Model"
#: How long "at once" may take (a drain ending, a cut call failing): room for
#: a loaded machine's event loop, well short of the 10 s to 60 s bounds
#: (grace, transfer bound, call timeout) a drain getting it wrong would wait out.
PROMPTLY = 5.0


async def test_call_is_served_on_the_port_picked_at_start(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner()

    assert runner.port > 0
    reply = await v1.ModelStub(open_channel(runner.port)).get_server_info(timeout=5)
    assert reply.backend == "test"
    assert runner.service_names == (MODEL,)


async def test_handler_sees_metadata_and_one_connection_object_per_connection(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    servicer = SlowModel()
    runner = await start_runner(servicer=servicer)
    stub = v1.ModelStub(open_channel(runner.port))
    other_stub = v1.ModelStub(open_channel(runner.port))

    await stub.get_server_info(timeout=5, metadata={DELAY_KEY: "0"})
    await stub.get_server_info(timeout=5)
    await other_stub.get_server_info(timeout=5)

    first, second, third = servicer.seen_connection_ids
    assert first == second
    assert third != first
    assert servicer.seen_certificates == [None, None, None]


async def test_health_is_serving_per_service_and_overall_and_unknown_services_are_not_found(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner()
    channel = open_channel(runner.port)

    assert await health_status(channel) == SERVING
    assert await health_status(channel, MODEL) == SERVING
    with pytest.raises(GRPCError) as raised:
        await health_status(channel, "bugless.v1.Nope")
    assert raised.value.status is Status.NOT_FOUND


async def test_set_serving_and_readiness_checks_drive_health(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    database = ServiceStatus()
    database.set(True)
    runner = await start_runner(readiness_checks=[database])
    channel = open_channel(runner.port)

    database.set(False)
    assert await health_status(channel, MODEL) == NOT_SERVING
    assert await health_status(channel) == NOT_SERVING
    database.set(True)
    assert await health_status(channel) == SERVING

    runner.set_serving(False, service=MODEL)
    assert await health_status(channel, MODEL) == NOT_SERVING
    runner.set_serving(True)
    assert await health_status(channel, MODEL) == SERVING
    with pytest.raises(ValueError, match="not served here"):
        runner.set_serving(False, service="bugless.v1.Nope")


async def test_drain_reports_not_serving_finishes_in_flight_calls_and_refuses_new_ones(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    settings = GrpcServerSettings(insecure_local=True, drain_seconds=0.4, grace_seconds=30.0)
    servicer = SlowModel()
    runner = await start_runner(settings, servicer=servicer)
    channel = open_channel(runner.port)
    stub = v1.ModelStub(channel)
    # Held until the refusals were seen: a 1 s delay ended it (and the drain)
    # first when the steps between took 0.4 s longer than usual.
    slow_call = asyncio.create_task(stub.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")

    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(0.1)
    assert await health_status(channel) == NOT_SERVING
    assert await health_status(channel, MODEL) == NOT_SERVING
    with pytest.raises(RuntimeError, match="draining"):
        runner.set_serving(True)

    await asyncio.sleep(0.5)  # past drain_seconds: no longer accepting
    assert not drain.done()
    with pytest.raises(GRPCError) as refused:
        await stub.get_server_info(timeout=5)
    assert refused.value.status is Status.UNAVAILABLE
    mapped = from_grpc_error(refused.value)
    assert isinstance(mapped, Unavailable)
    assert mapped.refused_while_draining  # tagged: safe to retry, even a write
    assert "shutting down" in mapped.message
    with pytest.raises(ConnectionRefusedError):
        await v1.ModelStub(open_channel(runner.port)).get_server_info(timeout=5)

    assert not slow_call.done()
    servicer.release_held()
    reply = await slow_call
    assert reply.backend == "test"
    await asyncio.wait_for(drain, timeout=PROMPTLY)


async def test_drain_pushes_not_serving_to_watchers_without_waiting_for_their_stream(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=30.0)
    )
    watch = HealthStub(open_channel(runner.port)).Watch
    async with watch.open(timeout=10) as stream:
        await stream.send_message(HealthCheckRequest(service=MODEL), end=True)
        first = await stream.recv_message()
        assert first is not None
        assert first.status == SERVING

        drain = asyncio.create_task(runner.drain())
        second = await stream.recv_message()
        assert second is not None
        assert second.status == NOT_SERVING
        # A Watch never ends by itself: the drain must not spend its grace on it.
        await asyncio.wait_for(drain, timeout=PROMPTLY)
        with pytest.raises(StreamTerminatedError):
            await stream.recv_message()


async def test_calls_still_running_after_the_grace_period_are_cancelled(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=0.2)
    )
    stub = v1.ModelStub(open_channel(runner.port))
    stuck_call = asyncio.create_task(stub.get_server_info(timeout=10, metadata={DELAY_KEY: "30"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")

    await asyncio.wait_for(runner.drain(), timeout=PROMPTLY)

    with pytest.raises(StreamTerminatedError):
        await asyncio.wait_for(stuck_call, timeout=PROMPTLY)
    assert runner.in_flight == 0


#: A transfer's pieces: one every PAUSE s.
PIECE, PAUSE = b"x" * 16384, 0.1


async def _pieces(count: int | None) -> AsyncIterator[v1.UploadAttachmentRequest]:
    """An upload sent slowly: ``count`` pieces (``None``: without end)."""
    yield v1.UploadAttachmentRequest(header=v1.UploadAttachmentHeader(name="slow.bin"))
    sent = 0
    while count is None or sent < count:
        await asyncio.sleep(PAUSE)
        yield v1.UploadAttachmentRequest(chunk=PIECE)
        sent += 1


async def test_drain_lets_a_transfer_outlast_the_grace_and_closes_when_it_ends(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """An upload running at the grace goes on (drain_transfer_seconds); the close follows its end.

    Before, a drain cancelled it with every other call at ``grace_seconds``.
    """
    runner = await start_runner(
        TransferServerSettings(
            insecure_local=True, drain_seconds=0.0, grace_seconds=0.3, drain_transfer_seconds=30.0
        )
    )
    stub = v1.ModelStub(open_channel(runner.port))
    upload = asyncio.create_task(stub.upload_attachment(_pieces(15), timeout=30))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    drain = asyncio.create_task(runner.drain())

    reply = await upload
    answered = loop.time()
    assert reply.attachment is not None
    assert reply.attachment.size == 15 * len(PIECE)
    assert answered - started > 0.3  # past the grace: the case this is about
    await asyncio.wait_for(drain, timeout=PROMPTLY)  # at once, not at the 30 s bound
    with pytest.raises(ConnectionRefusedError):
        await v1.ModelStub(open_channel(runner.port)).get_server_info(timeout=5)


async def test_a_transfer_outlasting_its_bound_is_cancelled_and_counted_once(
    start_runner: StartRunner, open_channel: OpenChannel, caplog: pytest.LogCaptureFixture
) -> None:
    runner = await start_runner(
        TransferServerSettings(
            insecure_local=True, drain_seconds=0.0, grace_seconds=0.2, drain_transfer_seconds=0.8
        )
    )
    caplog.set_level(logging.INFO, logger="bugless_core.grpc")
    stub = v1.ModelStub(open_channel(runner.port))
    upload = asyncio.create_task(stub.upload_attachment(_pieces(None), timeout=30))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")
    loop = asyncio.get_running_loop()
    started = loop.time()

    await asyncio.wait_for(runner.drain(), timeout=5)

    # Its bound, a float's hair allowed; above, a margin for a loaded machine
    # well short of the upload's 30 s, which a drain ignoring the bound would take.
    assert 0.79 <= loop.time() - started < 5.0
    with pytest.raises((StreamTerminatedError, GRPCError)):
        await asyncio.wait_for(upload, timeout=PROMPTLY)
    stopped = [r.getMessage() for r in caplog.records if " stopped; " in r.getMessage()]
    assert stopped == ["test-model stopped; 1 calls were cancelled, 1 of them transfers"]


async def test_calls_beside_a_transfer_are_cancelled_at_the_grace_not_at_its_end(
    start_runner: StartRunner, open_channel: OpenChannel, caplog: pytest.LogCaptureFixture
) -> None:
    """Only transfers outlast the grace: a stuck call on the same connection ends at the grace.

    Before, it waited with the transfer until the close (here 30 s). It ends
    as the close would end it: its stream terminated, no status.
    """
    runner = await start_runner(
        TransferServerSettings(
            insecure_local=True, drain_seconds=0.0, grace_seconds=0.3, drain_transfer_seconds=30.0
        )
    )
    caplog.set_level(logging.INFO, logger="bugless_core.grpc")
    stub = v1.ModelStub(open_channel(runner.port))
    upload = asyncio.create_task(stub.upload_attachment(_pieces(25), timeout=30))
    stuck = asyncio.create_task(stub.get_server_info(timeout=30, metadata={DELAY_KEY: "30"}))
    await eventually(lambda: runner.in_flight == 2, "runner.in_flight == 2")
    loop = asyncio.get_running_loop()
    started = loop.time()
    drain = asyncio.create_task(runner.drain())

    with pytest.raises(StreamTerminatedError):
        await asyncio.wait_for(stuck, timeout=5)
    # At the grace (0.3 s), not the transfer's 30 s; the loop may run a timer
    # a hair early and the difference of two floats came out 0.29999… once.
    assert 0.29 <= loop.time() - started < 5.0  # the transfer's bound is 30 s
    assert not upload.done()
    reply = await upload
    assert reply.attachment is not None
    assert reply.attachment.size == 25 * len(PIECE)
    await asyncio.wait_for(drain, timeout=PROMPTLY)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "test-model: 1 transfer(s) still running after the grace; waiting up to 29.7s more;"
        " cancelled the 1 other call(s)" in messages
    )
    assert "test-model stopped; 1 calls were cancelled, 0 of them transfers" in messages


async def test_a_transfer_bound_below_the_grace_counts_as_the_grace(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """A transfer is never cut before other calls: a bound set lower waits the grace anyway.

    (A service given a longer ``--grace-seconds`` than the deployment's
    transfer bound still starts, and its transfers get the grace.)
    """
    runner = await start_runner(
        TransferServerSettings(
            insecure_local=True, drain_seconds=0.0, grace_seconds=30.0, drain_transfer_seconds=0.1
        )
    )
    stub = v1.ModelStub(open_channel(runner.port))
    upload = asyncio.create_task(stub.upload_attachment(_pieces(5), timeout=30))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")
    drain = asyncio.create_task(runner.drain())

    reply = await upload
    assert reply.attachment is not None
    assert reply.attachment.size == 5 * len(PIECE)
    await asyncio.wait_for(drain, timeout=PROMPTLY)


async def test_stop_now_cuts_a_drain_short(start_runner: StartRunner) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, drain_seconds=60.0, grace_seconds=60.0)
    )
    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(0.05)

    runner.stop_now()

    await asyncio.wait_for(drain, timeout=PROMPTLY)
    assert runner.draining


async def test_stop_now_counts_the_calls_it_cut(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, drain_seconds=60.0, grace_seconds=60.0)
    )
    stub = v1.ModelStub(open_channel(runner.port))
    held = asyncio.create_task(stub.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")
    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(0.05)

    runner.stop_now()

    await asyncio.wait_for(drain, timeout=5)
    assert runner.cut_at_signal == 1
    with pytest.raises(StreamTerminatedError):
        await held


async def test_calls_cut_at_the_drains_own_grace_are_not_counted_as_cut_at_signal(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """The grace is the configured policy: a service that meets it exits 0."""
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=0.2)
    )
    stub = v1.ModelStub(open_channel(runner.port))
    held = asyncio.create_task(stub.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")

    await asyncio.wait_for(runner.drain(), timeout=5)

    assert runner.cut_at_signal == 0
    with pytest.raises(StreamTerminatedError):
        await held


async def test_failed_calls_are_logged_by_severity_and_successes_are_not(
    start_runner: StartRunner, open_channel: OpenChannel, caplog: pytest.LogCaptureFixture
) -> None:
    runner = await start_runner()
    stub = v1.ModelStub(open_channel(runner.port))
    caplog.set_level(logging.DEBUG, logger="bugless_core.grpc")

    await stub.get_server_info(timeout=5)
    with pytest.raises(GRPCError) as crashed:
        await stub.get_server_info(timeout=5, metadata={FAIL_KEY: "crash"})
    with pytest.raises(GRPCError) as rejected:
        await stub.get_server_info(timeout=5, metadata={FAIL_KEY: "grpc"})

    assert crashed.value.status is Status.UNKNOWN
    assert rejected.value.status is Status.INVALID_ARGUMENT
    await eventually(lambda: runner.in_flight == 0, "runner.in_flight == 0")
    records = [r for r in caplog.records if getattr(r, "grpc_method", None) == "GetServerInfo"]
    assert [(r.levelno, r.__dict__["grpc_code"]) for r in records] == [
        (logging.ERROR, "UNKNOWN"),
        (logging.DEBUG, "INVALID_ARGUMENT"),
    ]
    assert records[0].__dict__["service"] == "test-model"
    assert records[0].__dict__["duration_ms"] >= 0


async def test_a_call_the_client_cancels_ends_as_cancelled_not_as_a_server_fault(
    start_runner: StartRunner, open_channel: OpenChannel, caplog: pytest.LogCaptureFixture
) -> None:
    runner = await start_runner()
    stub = v1.ModelStub(open_channel(runner.port))
    caplog.set_level(logging.DEBUG, logger="bugless_core.grpc")
    call = asyncio.create_task(stub.get_server_info(timeout=10, metadata={DELAY_KEY: "30"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")

    call.cancel()  # the client resets the stream while the handler still works

    await eventually(lambda: runner.in_flight == 0, "runner.in_flight == 0")
    records = [r for r in caplog.records if getattr(r, "grpc_method", None) == "GetServerInfo"]
    assert [(r.levelno, r.__dict__["grpc_code"]) for r in records] == [(logging.DEBUG, "CANCELLED")]


async def test_metrics_endpoint_counts_calls_by_method_and_code(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, metrics_port=0, drain_seconds=0.0)
    )
    stub = v1.ModelStub(open_channel(runner.port))
    await stub.get_server_info(timeout=5)
    await stub.get_server_info(timeout=5)
    with pytest.raises(GRPCError):
        await stub.get_server_info(timeout=5, metadata={FAIL_KEY: "grpc"})
    await eventually(lambda: runner.in_flight == 0, "runner.in_flight == 0")

    assert runner.metrics_port is not None
    url = f"http://127.0.0.1:{runner.metrics_port}/metrics"
    with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as response:
        text = response.read().decode()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    method = (("grpc_method", "GetServerInfo"), ("grpc_service", MODEL))

    def code(name: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*method, ("grpc_code", name))))

    assert samples["grpc_server_handled_total", code("OK")] == 2
    assert samples["grpc_server_handled_total", code("INVALID_ARGUMENT")] == 1
    assert samples["grpc_server_handling_seconds_count", method] == 3
    assert samples["grpc_server_in_flight_calls", method] == 0


async def test_a_call_refused_while_draining_is_counted_as_unavailable(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """The refusal's status is the call's code in the metrics (not CANCELLED)."""
    registry = CollectorRegistry()
    settings = GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=30.0)
    servicer = SlowModel()
    runner = await start_runner(settings, servicer=servicer, metrics_registry=registry)
    stub = v1.ModelStub(open_channel(runner.port))
    # Held (not a 0.6 s delay, which could end it and the drain before the refusal).
    slow_call = asyncio.create_task(stub.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runner.in_flight == 1, "runner.in_flight == 1")
    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(0.1)
    with pytest.raises(GRPCError) as refused:
        await stub.get_server_info(timeout=5)
    assert refused.value.status is Status.UNAVAILABLE
    servicer.release_held()
    await slow_call
    await asyncio.wait_for(drain, timeout=5)

    labels = {"grpc_service": MODEL, "grpc_method": "GetServerInfo"}
    handled = "grpc_server_handled_total"
    assert registry.get_sample_value(handled, {**labels, "grpc_code": "UNAVAILABLE"}) == 1
    assert registry.get_sample_value(handled, {**labels, "grpc_code": "OK"}) == 1
    assert registry.get_sample_value(handled, {**labels, "grpc_code": "CANCELLED"}) is None
    assert registry.get_sample_value("grpc_server_in_flight_calls", labels) == 0


async def test_the_in_flight_gauge_counts_the_calls_running_on_every_runner_of_a_registry(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """Read when scraped, from counts the runners sharing a registry share."""
    registry = CollectorRegistry()
    first, second = SlowModel(), SlowModel()
    runners = [
        await start_runner(servicer=servicer, metrics_registry=registry)
        for servicer in (first, second)
    ]
    labels = {"grpc_service": MODEL, "grpc_method": "GetServerInfo"}
    held = [
        asyncio.create_task(
            v1.ModelStub(open_channel(runner.port)).get_server_info(
                timeout=30, metadata={HOLD_KEY: "1"}
            )
        )
        for runner in (*runners, runners[0])
    ]
    await eventually(
        lambda: sum(runner.in_flight for runner in runners) == 3,
        "sum(runner.in_flight for runner in runners) == 3",
    )
    assert registry.get_sample_value("grpc_server_in_flight_calls", labels) == 3
    first.release_held()
    await asyncio.gather(held[0], held[2])
    await eventually(lambda: runners[0].in_flight == 0, "runners[0].in_flight == 0")
    assert registry.get_sample_value("grpc_server_in_flight_calls", labels) == 1
    second.release_held()
    await held[1]
    await eventually(lambda: runners[1].in_flight == 0, "runners[1].in_flight == 0")
    assert registry.get_sample_value("grpc_server_in_flight_calls", labels) == 0


async def test_metrics_endpoint_is_closed_with_the_server(start_runner: StartRunner) -> None:
    runner = await start_runner(
        GrpcServerSettings(insecure_local=True, metrics_port=0, drain_seconds=0.0)
    )
    port = runner.metrics_port

    await runner.close()

    with pytest.raises(OSError):  # noqa: PT011 - refused, reset: any socket error
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/", timeout=2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_cert": Path("server.pem")}, "tls_cert and tls_key go together"),
        ({"client_ca": Path("ca.pem")}, "client_ca .* needs tls_cert"),
        ({"port": 70000, "insecure_local": True}, "port must be between 0 and 65535"),
        ({"grace_seconds": -1, "insecure_local": True}, "grace_seconds must be 0 or more"),
        ({}, "mutual TLS is required"),
        ({"tls_cert": Path("s.pem"), "tls_key": Path("s.key")}, "mutual TLS is required"),
    ],
)
def test_inconsistent_settings_are_refused_when_built(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GrpcServerSettings(**fields)


async def test_a_server_on_ipv6_loopback_logs_its_address_in_brackets(
    start_runner: StartRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: 'serving gRPC on ::1:PORT' and 'anyone who can reach ::1:PORT'."""
    caplog.set_level(logging.INFO)
    settings = GrpcServerSettings(
        insecure_local=True, host="::1", drain_seconds=0.0, grace_seconds=1.0
    )
    runner = await start_runner(settings)
    logged = [record.getMessage() for record in caplog.records]
    assert f"test-model serving gRPC on [::1]:{runner.port}" in logged
    assert [line for line in logged if f"anyone who can reach [::1]:{runner.port} may" in line]
