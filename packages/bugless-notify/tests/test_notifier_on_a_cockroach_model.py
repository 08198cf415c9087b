"""The notifier on a Model served by the CockroachDB backend (compatibility mode).

That backend's change feed is sequenced (writers append to a pending table,
the feed's readers number it; bugless-model-cockroach's README): here a
stack of its own runs ``bugless model serve`` with ``BUGLESS_MODEL=cockroach``
on a PostgreSQL database defaulting to SERIALIZABLE, the Authenticator, and
``bugless notify serve`` mailing to an aiosmtpd sink, and a change made
through the Model arrives as mail.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, StackConfig
from bugless_proto import v1
from bugless_testing.cockroach_sql import serializable_database
from bugless_testing.postgres import ThrowawayPostgres
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


@pytest.fixture(scope="module")
def cockroach_stack(
    postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """A Model with ``--model cockroach`` and an Authenticator, migrated and serving."""
    directory: Path = tmp_path_factory.mktemp("cockroach-stack")
    model_database = asyncio.run(serializable_database(postgres_server, "notify_cockroach_model"))
    stack = LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=model_database,
            auth_database_url=postgres_server.create_database("notify_cockroach_auth"),
            # The notifier's own queue stays on a READ COMMITTED database.
            extra_env={
                "BUGLESS_MODEL": "cockroach",
                "BUGLESS_NOTIFY_DATABASE_URL": postgres_server.create_database(
                    "notify_cockroach_queue"
                ),
            },
        )
    )
    try:
        stack.migrate()
        stack.start_backends()
        yield stack
    finally:
        stack.stop()


async def test_a_change_on_a_cockroach_model_is_mailed(
    cockroach_stack: LocalStack, smtp_sink: SmtpSink
) -> None:
    stack = cockroach_stack
    tag = secrets.token_hex(3)
    bob = stack.add_user(f"bob{tag}", "pw-" + secrets.token_hex(8), email=f"bob{tag}@example.test")
    notifier = stack.start_notify(
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(smtp_sink.port),
        "--smtp-security",
        "none",
        "--public-url",
        "https://bugs.example.test",
    )
    channel = stack.client_address("model", identity="web").channel()
    try:
        model = stack.acting_model(v1.ModelStub(channel), as_requested=True)
        info = await model.get_server_info(v1.GetServerInfoRequest())
        assert info.backend == "cockroach"
        assert {"change_feed", "watch"} <= set(info.capabilities)
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"crdb-{tag}")
        )
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(
                    title="Feed on CockroachDB", component_id=component.id, assignee=bob["user_id"]
                ),
            )
        )
        mails = await smtp_sink.wait_for_async(1, 60)
    finally:
        channel.close()
        stack.stop_service(notifier)
    assert [m.recipients for m in mails] == [(f"bob{tag}@example.test",)]
    assert "Feed on CockroachDB" in mails[0].message["Subject"]
    assert str(issue.id).encode() in mails[0].raw
