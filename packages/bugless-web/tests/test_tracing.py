"""Tracing across the services: one web request, one trace over web, Authenticator and Model.

Real processes (the stack's ``bugless model|auth|web serve``) export over
OTLP/HTTP to a real receiver on loopback; the W3C trace context crosses the
gRPC calls in their metadata.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from web_support import PASSWORD, World, csrf_of

from bugless_dev.stack import RunningService
from bugless_testing.otlp import OtlpReceiver, ReceivedSpan

SERVER_KIND = 2
WANTED = {"bugless-web", "bugless-auth", "bugless-model"}


@pytest.fixture
def traced(world: World, otlp_receiver: OtlpReceiver) -> Iterator[RunningService]:
    """A Model, an Authenticator and a web replica exporting traces to the receiver."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stack = world.stack
    model = stack.start("model", ["model", "serve", "--port", "0"], name="model-traced", env=env)
    auth = stack.start("auth", ["auth", "serve", "--port", "0"], name="auth-traced", env=env)
    web = stack.start_web(
        "--model",
        f"127.0.0.1:{model.port}",
        "--auth",
        f"127.0.0.1:{auth.port}",
        name="web-traced",
        env={**env, "BUGLESS_WEB_TOKEN_CACHE_SECONDS": "0"},
    )
    try:
        yield web
    finally:
        for service in (web, auth, model):
            stack.stop_service(service)


def _services_of(spans: list[ReceivedSpan], trace_id: str) -> set[str]:
    return {s.service for s in spans if s.trace_id == trace_id}


def test_one_page_is_one_trace_across_web_authenticator_and_model(
    traced: RunningService, otlp_receiver: OtlpReceiver
) -> None:
    with httpx.Client(base_url=str(traced.url), timeout=60) as client:
        token = csrf_of(client.get("/signin").text)
        signed_in = client.post(
            "/signin",
            data={"username": "bob", "password": PASSWORD, "_csrf": token, "next": "/"},
        )
        assert signed_in.status_code in (200, 303), signed_in.text
        page = client.get("/search", params={"q": "is:open"})
        assert page.status_code == 200, page.text

    def search_trace(spans: list[ReceivedSpan]) -> str | None:
        for span in spans:
            root = span.service == "bugless-web" and span.parent_span_id == ""
            if root and "search" in span.name and _services_of(spans, span.trace_id) >= WANTED:
                return span.trace_id
        return None

    spans = otlp_receiver.wait_for(lambda spans: search_trace(spans) is not None)
    trace_id = search_trace(spans)
    assert trace_id is not None
    in_trace = [s for s in spans if s.trace_id == trace_id]
    web_ids = {s.span_id for s in in_trace if s.service == "bugless-web"}
    grpc = [
        s
        for s in in_trace
        if s.service in ("bugless-auth", "bugless-model") and s.kind == SERVER_KIND
    ]
    # The gRPC server spans are children of the web request's spans: the
    # context travelled in the calls' metadata.
    assert grpc
    assert all(s.parent_span_id in web_ids for s in grpc), in_trace
    assert any(s.name.startswith("bugless.v1.Model/") for s in grpc)
    assert any(s.name.startswith("bugless.v1.Authenticator/") for s in grpc)
    # The Model's queries are spans of the same trace, under its gRPC span.
    model_ids = {s.span_id for s in grpc if s.service == "bugless-model"}
    assert any(s.service == "bugless-model" and s.parent_span_id in model_ids for s in in_trace), (
        "no database span under the Model's call"
    )


def test_without_an_endpoint_tracing_is_not_even_imported() -> None:
    probe = (
        "import sys, asyncio\n"
        "from bugless_core import tracing\n"
        "from bugless_core.grpc import CorkedChannel\n"
        "assert not tracing.configure('model', {})\n"
        "async def main():\n"
        "    channel = CorkedChannel('127.0.0.1', 1)\n"
        "    channel.close()\n"
        "asyncio.run(main())\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={}
    )
    assert result.stdout.strip() == "False", result.stderr
