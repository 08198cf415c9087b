"""Every error ``/device/start`` and ``/device/poll`` give is ``{"error", "code"}`` JSON.

``bugless login`` reads that shape alone. A body too large or not JSON was
refused with the HTML error page, as were the router's refusal and a backend
away or failing: the CLI took such a 4xx for another site ("check --web",
exit 2) while the address was right. Real HTTP to a ``--dev`` web replica
on an Authenticator of its own, which the last test stops.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from web_support import World

from bugless_dev.stack import RunningService

JSON_PATHS = ("/device/start", "/device/poll")


@dataclass
class DeviceWeb:
    """A web replica on an Authenticator of its own, which a test may stop."""

    url: str
    auth: RunningService


@pytest.fixture(scope="module")
def device_web(world: World) -> Iterator[DeviceWeb]:
    """A web replica whose Authenticator no other test uses (the last test stops it)."""
    stack = world.stack
    auth = stack.start("auth", ["auth", "serve", "--port", "0"], name="auth-device-errors")
    started: list[RunningService] = [auth]
    try:
        web = stack.start_web(
            "--auth", f"127.0.0.1:{auth.port}", "--call-timeout-seconds", "2",
            name="web-device-errors",
        )  # fmt: skip
        started.append(web)
        assert web.url is not None
        yield DeviceWeb(web.url, auth)
    finally:
        for service in reversed(started):
            if not service.process.exited:
                stack.stop_service(service)


def _refusal(answer: httpx.Response, status: int, code: str) -> str:
    """The JSON refusal's message, after checking its status, shape and headers."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    assert answer.headers["cache-control"] == "no-store"
    said = answer.json()
    assert set(said) == {"error", "code"}, said
    assert said["code"] == code
    assert isinstance(said["error"], str)
    assert said["error"]
    assert "Traceback" not in said["error"]
    return str(said["error"])


def test_a_body_refused_before_it_is_read_is_a_json_refusal(device_web: DeviceWeb) -> None:
    with httpx.Client(base_url=device_web.url, timeout=60) as http:
        for path in JSON_PATHS:
            too_large = http.post(path, content=b"{" + b" " * 40_000 + b"}")
            said = _refusal(too_large, 413, "RESOURCE_EXHAUSTED")
            assert said == "the request body is 40002 bytes; at most 32768 are read"
            not_json = http.post(path, content=b"csr_pem=x")
            assert _refusal(not_json, 400, "INVALID_ARGUMENT") == "the request body is not JSON"
            listed = http.post(path, json=["csr_pem"])
            said = _refusal(listed, 400, "INVALID_ARGUMENT")
            assert said == "the request body must be a JSON object"
            # Over the server framework's own limit: refused before the handler runs.
            huge = http.post(path, content=b"x" * 10_000_001)
            _refusal(huge, 413, "RESOURCE_EXHAUSTED")
            opened = http.get(path)
            _refusal(opened, 405, "UNIMPLEMENTED")


def test_the_authenticator_away_is_a_json_503_not_the_html_page(
    world: World, device_web: DeviceWeb
) -> None:
    """Last in the module: it stops the replica's Authenticator."""
    world.stack.stop_service(device_web.auth)
    with httpx.Client(base_url=device_web.url, timeout=60) as http:
        started = http.post("/device/start", json={"csr_pem": "x", "validity_seconds": 60})
        polled = http.post("/device/poll", json={"device_code": "nothing"})
    for answer in (started, polled):
        said = _refusal(answer, 503, "UNAVAILABLE")
        assert "<html" not in said


def test_a_body_announced_too_large_is_refused_before_it_is_sent(device_web: DeviceWeb) -> None:
    """The web tier answers the headers alone: it neither waits for nor holds the body.

    Before, the endpoints read any body up to the framework's 10 MB default
    and only then compared it with their 32 KiB: an anonymous caller could
    make a replica wait for, and hold, 10 MB per request. Here the body
    announced is never sent; the refusal must come anyway.
    """
    host, port = device_web.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    for path in JSON_PATHS:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 1000000\r\n\r\n{{".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(65536)  # raises TimeoutError if the server waits for the body
                assert chunk, f"{path}: the connection closed without an answer"
                answer += chunk
        head = answer.split(b"\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 413"), f"{path}: {head}"
