from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser_support import start_web_server
from litestar.testing import AsyncTestClient
from web_support import World
from xss_corpus import PAYLOADS, dangerous_markup

from bugless_web.frontend import local_url
from bugless_web.markup import render_markdown


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _status(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers.get("location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("location", "")


#: The drain of the SIGTERM test: every check of the draining server must fit
#: in it, counted from the signal, on a loaded machine too (it was 3 s).
DRAIN_SECONDS = 10


def _drain_started(url: str) -> None:
    """Wait until the server fails readiness (it handled SIGTERM); ready until then."""
    deadline = time.monotonic() + 30
    while (status := _status(f"{url}/readyz")[0]) != 503:
        assert status == 200, status
        assert time.monotonic() < deadline, "the server did not start draining"
        time.sleep(0.05)


def test_sigterm_drains_then_exits(world: World, tmp_path: Path) -> None:
    server = start_web_server(
        world.stack,
        extra_env={
            "BUGLESS_WEB_STEER_TO": "https://next.example",
            "BUGLESS_WEB_DRAIN_SECONDS": str(DRAIN_SECONDS),
        },
    )
    try:
        assert _status(f"{server.url}/readyz")[0] == 200
        server.process.signal(signal.SIGTERM)
        _drain_started(server.url or "")
        assert _status(f"{server.url}/healthz")[0] == 200
        assert _status(f"{server.url}/search?q=x") == (303, "https://next.example/search?q=x")
        assert server.process.wait(timeout=30) == 0
    finally:
        world.stack.stop_service(server)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markdown_output_is_sanitised(payload: str) -> None:
    assert dangerous_markup(str(render_markdown(payload))) == []


def test_markdown_keeps_formatting_and_links_issue_references() -> None:
    html = str(render_markdown("**b** [ok](https://example.com) see b/42 and `b/7`"))
    assert "<strong>b</strong>" in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow ugc"' in html
    assert '<a href="/issues/42" rel="noopener noreferrer nofollow ugc">b/42</a>' in html
    assert "<code>b/7</code>" in html


def test_dangerous_markup_checker_catches_real_payloads() -> None:
    assert dangerous_markup('<img src=x onerror="alert(1)">')
    assert dangerous_markup('<a href="javascript:alert(1)">x</a>')
    assert dangerous_markup("<script>alert(1)</script>")
    assert not dangerous_markup('<input value="&lt;img onerror=alert(1)&gt;">')


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("/issues/1?x=y", "/issues/1?x=y"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_local_url_only_accepts_paths_on_this_site(candidate: str | None, expected: str) -> None:
    assert local_url(candidate) == expected


async def test_oidc_callback_without_a_flow_is_a_400_page(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/signin/oidc/callback?code=abc&state=def")
    assert response.status_code == 400
    assert "expired or was opened in another browser" in response.text


async def test_an_oidc_provider_error_without_a_flow_shows_none_of_its_text(
    client: AsyncTestClient[Any],
) -> None:
    """Anyone can craft this link: its words must not appear on our sign-in page.

    A provider's refusal during a real sign-in still shows its reason
    (test_oidc_signin.py, against the real provider).
    """
    response = await client.get(
        "/signin/oidc/callback?error=access_denied&error_description=Your+account+is+locked"
    )
    assert response.status_code == 400
    assert "expired or was opened in another browser" in response.text
    assert "access_denied" not in response.text
    assert "locked" not in response.text


async def test_oidc_start_with_unknown_authenticator_is_a_clear_4xx(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/signin/oidc/start/nope", follow_redirects=False)
    assert 400 <= response.status_code < 500
    assert "Traceback" not in response.text


def test_rendering_is_memoised_and_still_sanitised() -> None:
    payload = "<script>alert(1)</script> **bold** (memoised)"
    first = render_markdown(payload)
    second = render_markdown(payload)
    assert first is second  # the second view of a comment renders nothing
    assert "<script" not in str(second)
    assert "<strong>bold</strong>" in str(second)
