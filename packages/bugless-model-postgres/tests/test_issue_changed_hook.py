"""``bugless_issue_changed`` through a running Model service, on PostgreSQL.

A plugin implementing the hook hears of every committed entry with the issue
as it is after it; with no such plugin the Model does not read writes back
to report them (one query round fewer per write).
"""

from __future__ import annotations

import uuid

from grpclib.client import Channel

from bugless_core import hookimpl
from bugless_core.grpc import GrpcServerSettings
from bugless_core.model.backend import ModelSettings
from bugless_core.model.runner import close_model, start_model
from bugless_core.plugins import load_plugins
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

ADMIN = v1.Caller(user_id="hook-admin", admin=True)


class _Recorder:
    def __init__(self) -> None:
        self.heard: list[tuple[int, int, str, str]] = []

    @hookimpl
    def bugless_issue_changed(
        self, issue: v1.Issue, entry: v1.HistoryEntry, backend_name: str
    ) -> None:
        self.heard.append((issue.id, entry.version, issue.title, backend_name))


async def _create_through(port: int) -> v1.Issue:
    channel = Channel("127.0.0.1", port)
    try:
        model = v1.ModelStub(channel)
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"hooks-{uuid.uuid4().hex[:8]}")
        )
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN, fields=v1.IssueFields(title="heard", component_id=component.id)
            )
        )
        await model.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN, issue_id=issue.id, expected_version=1, comment="again"
            )
        )
        return issue
    finally:
        channel.close()


async def test_a_hook_plugin_hears_every_committed_entry(model_settings: ModelSettings) -> None:
    recorder = _Recorder()
    plugins = load_plugins(entry_points=False, extra=[recorder])
    assert plugins.watches_issue_changes
    backend, runner = await start_model(
        plugins,
        PostgresBackend,
        model_settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        migrate=True,
    )
    try:
        issue = await _create_through(runner.port)
    finally:
        await runner.close()
        await close_model(backend)
    assert recorder.heard == [
        (issue.id, 1, "heard", "postgres"),
        (issue.id, 2, "heard", "postgres"),
    ]


async def test_without_a_hook_plugin_writes_are_not_read_back(
    model_settings: ModelSettings,
) -> None:
    plugins = load_plugins(entry_points=False)
    assert not plugins.watches_issue_changes
    backend, runner = await start_model(
        plugins,
        PostgresBackend,
        model_settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        migrate=True,
    )
    try:
        await _create_through(runner.port)
        assert backend._change_listeners == []
    finally:
        await runner.close()
        await close_model(backend)
