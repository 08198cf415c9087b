"""``bugless.v1.Webhooks``: a component's admins manage its webhooks through the API.

Real components: the notifier process (which keeps the endpoints and asks the
Model for the caller's role), ``bugless api serve`` reaching it over the
stack's mutual TLS with ``BUGLESS_API_NOTIFY``, bots on client certificates,
the ``bugless`` CLI as a script runs it, and a real HTTP server that receives
the signed POSTs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_support import Bots, bugless_cli, cli_json

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_core.errors import FailedPrecondition, NotFound, PermissionDenied
from bugless_testing.smtp import SmtpSink
from bugless_testing.webhooks import WebhookReceiver

SECRET = "api-hook-secret-" + secrets.token_hex(16)


@dataclass
class Served:
    """The API process with a notifier, and a receiver of webhook POSTs."""

    port: int
    receiver: WebhookReceiver
    env: dict[str, str]


@pytest.fixture(scope="module")
def served(bots: Bots, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    stack = bots.stack
    with WebhookReceiver(SECRET) as receiver, SmtpSink() as sink:
        notifier = stack.start_notify(
            *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
            *("--smtp-port", str(sink.port), "--smtp-security", "none"),
            name=f"notify-{secrets.token_hex(3)}",
        )
        api = stack.start(
            "api",
            ["api", "serve", "--port", "0"],
            name=f"api-webhooks-{secrets.token_hex(3)}",
            env={
                "BUGLESS_API_MODEL": f"127.0.0.1:{stack.model.port}",
                "BUGLESS_API_AUTH": f"127.0.0.1:{stack.auth.port}",
                "BUGLESS_API_NOTIFY": f"127.0.0.1:{notifier.port}",
                "BUGLESS_API_TLS_CERT": str(stack.server.cert),
                "BUGLESS_API_TLS_KEY": str(stack.server.key),
                "BUGLESS_API_CLIENT_CA": str(stack.pki.ca_file),
            },
        )
        files = bots["boss"]
        env = {
            **os.environ,
            "BUGLESS_API": f"127.0.0.1:{api.port}",
            "BUGLESS_CERT": str(files.cert),
            "BUGLESS_KEY": str(files.key),
            "BUGLESS_CA": str(stack.pki.ca_file),
            "BUGLESS_CLIENT_CONFIG": str(tmp_path_factory.mktemp("cli") / "absent.toml"),
        }
        try:
            yield Served(api.port, receiver, env)
        finally:
            stack.stop_service(api)
            stack.stop_service(notifier)


def _issue_id(body: dict[str, object]) -> int:
    issue = body.get("issue")
    return int(issue["id"]) if isinstance(issue, dict) else 0


@pytest.fixture
async def client_of(served: Served, bots: Bots) -> AsyncIterator[type[BuglessClient]]:
    opened: list[BuglessClient] = []

    def connect(username: str) -> BuglessClient:
        files = bots[username]
        client = BuglessClient(
            f"127.0.0.1:{served.port}",
            cert=files.cert,
            key=files.key,
            ca=bots.stack.pki.ca_file,
            timeout=30,
            retry=RetryPolicy(attempts=1),
        )
        opened.append(client)
        return client

    yield connect  # type: ignore[misc]
    for client in opened:
        client.close()


async def test_an_admin_adds_lists_disables_and_deletes_an_endpoint_that_receives_changes(
    served: Served, client_of: type[BuglessClient]
) -> None:
    admin = client_of("boss")  # type: ignore[call-arg]  # a global admin
    component = await admin.create_component(f"Hooks-{secrets.token_hex(3)}")
    assert (await admin.list_component_webhooks(component.id)).webhooks == []

    added = await admin.add_component_webhook(component.id, f"{served.receiver.url}/in", SECRET)
    assert added.secret_hint == SECRET[-4:]
    assert added.url_origin == served.receiver.url
    assert (added.payload_format, added.enabled, added.component_id) == ("json", True, component.id)
    listed = await admin.list_component_webhooks(component.id)
    assert [w.name for w in listed.webhooks] == [added.name]
    assert [e.action for e in listed.history] == ["add"]

    # The endpoint added through the API gets the component's changes, signed.
    issue = await admin.create_issue("reaches the hook", component.id)
    received = await served.receiver.wait_for(
        lambda got: any(_issue_id(hook.body) == issue.id for hook in got)
    )
    assert all(hook.signed for hook in received)

    disabled = await admin.set_component_webhook_enabled(component.id, added.name, enabled=False)
    assert not disabled.enabled
    left = await admin.delete_component_webhook(component.id, added.name)
    assert left.webhooks == []
    assert [e.action for e in left.history][:3] == ["delete", "disable", "add"]


async def test_someone_who_is_not_the_components_admin_is_refused_and_changes_nothing(
    served: Served, client_of: type[BuglessClient]
) -> None:
    admin = client_of("boss")  # type: ignore[call-arg]
    outsider = client_of("outsider")  # type: ignore[call-arg]
    await outsider.whoami()
    component = await admin.create_component(f"Guarded-{secrets.token_hex(3)}")
    with pytest.raises(PermissionDenied, match="only admins of component"):
        await outsider.add_component_webhook(component.id, f"{served.receiver.url}/x", SECRET)
    with pytest.raises(PermissionDenied):
        await outsider.list_component_webhooks(component.id)
    assert (await admin.list_component_webhooks(component.id)).webhooks == []
    with pytest.raises(NotFound):
        await admin.list_component_webhooks(2**62)


async def test_an_api_without_a_notifier_says_so(api: object, bots: Bots) -> None:
    files = bots["boss"]
    port = api.port  # type: ignore[attr-defined]
    async with BuglessClient(
        f"127.0.0.1:{port}", cert=files.cert, key=files.key, ca=bots.stack.pki.ca_file
    ) as admin:
        with pytest.raises(FailedPrecondition, match="started without --notify"):
            await admin.list_component_webhooks(1)


def test_the_cli_adds_with_a_made_secret_shown_once_and_lists_by_path(
    served: Served, tmp_path: Path
) -> None:
    name = f"Cli-Hooks-{secrets.token_hex(3)}"
    component = cli_json(served.env, "component", "create", name)
    made = cli_json(served.env, "component", "webhook", "add", name, f"{served.receiver.url}/cli")
    secret = made["secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 32
    assert made["webhook"]["secret_hint"] == secret[-4:]
    table = bugless_cli(served.env, "component", "webhook", "list", component["id"]).stdout
    assert made["webhook"]["name"] in table
    assert secret not in table

    short = tmp_path / "short"
    short.write_text("too short\n")
    refused = bugless_cli(
        served.env,
        *("component", "webhook", "add", name, f"{served.receiver.url}/x"),
        *("--secret-file", str(short)),
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "give 32 or more" in refused.stderr
    # The notifier's refusal names the argument (URL), not the request's field (url).
    ftp = bugless_cli(served.env, "component", "webhook", "add", name, "ftp://x", check=False)
    assert (ftp.returncode, ftp.stderr.strip()) == (
        1,
        "error: URL: 'ftp://x' is not an http:// or https:// URL",
    )
    kept = tmp_path / "kept"
    kept.write_text(SECRET + "\n")
    from_file = cli_json(
        served.env,
        *("component", "webhook", "add", name, f"{served.receiver.url}/y", "--format", "chat"),
        *("--secret-file", str(kept)),
    )
    assert "secret" not in from_file
    assert (from_file["payload_format"], from_file["secret_hint"]) == ("chat", SECRET[-4:])
    bugless_cli(served.env, "component", "webhook", "disable", name, from_file["name"])
    rows = cli_json(served.env, "component", "webhook", "list", name)["webhooks"]
    assert {w["name"]: w.get("enabled", False) for w in rows} == {
        made["webhook"]["name"]: True,
        from_file["name"]: False,
    }
    enabled = cli_json(served.env, "component", "webhook", "enable", name, from_file["name"])
    assert (enabled["name"], enabled["enabled"]) == (from_file["name"], True)
