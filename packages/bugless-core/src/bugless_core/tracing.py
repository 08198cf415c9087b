"""OpenTelemetry traces across the services, on only when an OTLP endpoint is configured.

A page in the web tier calls the Authenticator and the Model; a bot's call to
the API calls the Model; the Model queries PostgreSQL. To see where one slow
request spent its time, every process exports spans over OTLP/HTTP to the
collector named by the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) variable, and the W3C trace context
travels in gRPC metadata (``traceparent``), so the spans of all services join
one trace.

When neither variable is set, nothing here does anything: OpenTelemetry is
not even imported, no event listener is attached to a server or a channel,
and a call costs exactly what it cost before. The standard ``OTEL_*``
variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_SCHEDULE_DELAY``, headers, timeouts) are
read by the OpenTelemetry SDK itself.

What is instrumented:
    * gRPC servers (:func:`instrument_server`): one SERVER span per call, a
      child of the caller's span when the call carries a ``traceparent``;
    * gRPC channels (:func:`instrument_channel`): the current context is
      injected into every call's metadata;
    * asyncpg: one span per query (OpenTelemetry's asyncpg instrumentation);
    * the web tier wraps its ASGI app (``bugless_web.tracing``).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grpclib.client import Channel
    from grpclib.events import RecvRequest, SendRequest
    from grpclib.server import Server

#: The standard variables that turn tracing on.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: Instrumentation scope of bugless' own spans.
TRACER_NAME = "bugless"

_service: str | None = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names an OTLP endpoint (tracing is wanted)."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def enabled() -> bool:
    """Whether :func:`configure` turned tracing on in this process."""
    return _service is not None


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process when an endpoint is configured.

    Idempotent: the first call names the process (``bugless-<service>``
    unless ``OTEL_SERVICE_NAME`` says otherwise); later calls change nothing.

    Args:
        service: The bugless service (``model``, ``auth``, ``web``, ...).
        environ: The environment (default: this process's).

    Returns:
        Whether tracing is on.
    """
    global _service  # noqa: PLW0603 - one tracer provider per process, by OpenTelemetry's design
    if _service is not None:
        return True
    env = os.environ if environ is None else environ
    if not wanted(env):
        return False
    from opentelemetry import trace  # noqa: PLC0415 - imported only when tracing is on
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    name = env.get("OTEL_SERVICE_NAME", "").strip() or f"bugless-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Spans still queued at exit are sent, not dropped.
    atexit.register(provider.shutdown)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _service = service
    return True


def instrument_server(server: Server) -> None:
    """Give every call of ``server`` a SERVER span (no-op while tracing is off)."""
    if not enabled():
        return
    from grpclib.events import RecvRequest, listen  # noqa: PLC0415

    listen(server, RecvRequest, _on_request)


def instrument_channel(channel: Channel) -> None:
    """Send the current trace context with every call on ``channel`` (no-op while off)."""
    if not enabled():
        return
    from grpclib.events import SendRequest, listen  # noqa: PLC0415

    listen(channel, SendRequest, _on_send)


async def _on_send(event: SendRequest) -> None:
    from opentelemetry import propagate  # noqa: PLC0415

    propagate.inject(event.metadata)


async def _on_request(event: RecvRequest) -> None:
    """Run the handler inside a span that continues the caller's trace."""
    from grpclib.exceptions import GRPCError  # noqa: PLC0415
    from opentelemetry import propagate, trace  # noqa: PLC0415
    from opentelemetry.trace import SpanKind, StatusCode  # noqa: PLC0415

    parent = propagate.extract(_first_values(event.metadata))
    handler = event.method_func
    method = event.method_name
    service, _, rpc = method.lstrip("/").partition("/")
    tracer = trace.get_tracer(TRACER_NAME)

    async def traced(stream: Any) -> None:
        with tracer.start_as_current_span(
            method.lstrip("/"),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await handler(stream)
            except GRPCError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.status.value)
                if exc.status.value in _SERVER_FAULT_CODES:
                    span.set_status(StatusCode.ERROR, exc.message or exc.status.name)
                raise
            else:
                span.set_attribute("rpc.grpc.status_code", 0)

    event.method_func = traced


#: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS: the
#: server's trouble (OpenTelemetry's gRPC conventions); the others are the caller's.
_SERVER_FAULT_CODES = frozenset({2, 4, 12, 13, 14, 15})


def _first_values(metadata: Any) -> dict[str, str]:
    """GRPC metadata as a plain mapping (the propagator reads single values)."""
    return {str(key): str(value) for key, value in metadata.items() if isinstance(value, str)}
