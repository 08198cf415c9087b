"""``LocalStack.acting_model``: callers' assertions for seeding behind the frontends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bugless_core.clients import call
from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, StackConfig
from bugless_proto import v1
from bugless_testing.postgres import ThrowawayPostgres


@pytest.fixture
def model_only(postgres_server: ThrowawayPostgres, tmp_path: Path) -> Iterator[LocalStack]:
    """A stack running a Model and no Authenticator (``--insecure-local``, as a benchmark's)."""
    stack = LocalStack(
        StackConfig(
            directory=tmp_path,
            pki=LocalPki.open(tmp_path / "pki"),
            model_database_url=postgres_server.create_database("alone_model"),
            auth_database_url=postgres_server.create_database("alone_auth"),
            insecure_local=True,
        )
    )
    try:
        stack.migrate()
        stack.start_model()
        yield stack
    finally:
        stack.stop()


async def test_assertions_signed_as_requested_need_no_authenticator(
    model_only: LocalStack,
) -> None:
    """Before: 'no auth service is running in this stack', though none was asked."""
    channel = model_only.model.channel()
    try:
        model = model_only.acting_model(v1.ModelStub(channel), as_requested=True)
        admin = v1.Caller(user_id="u_seeder", admin=True)
        made = await call(
            model.create_component, v1.CreateComponentRequest(caller=admin, name="Alone")
        )
        read = await call(
            model.get_component, v1.GetComponentRequest(caller=admin, component_id=made.id)
        )
    finally:
        channel.close()
    assert read.name == "Alone"
    assert not [service for service in model_only.services if service.kind == "auth"]
