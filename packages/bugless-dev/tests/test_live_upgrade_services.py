"""The live upgrade of the Authenticator and of the notifier, calls and mail flowing.

``test_live_upgrade.py`` holds docs/upgrades.md's promise for the Model's
newest migration; this drill holds it for the two other services with a
schema of their own, in the same way (the previous code extracted from the
repository's history with ``git archive`` and run from this environment with
its ``src`` folders first on ``PYTHONPATH``), each upgraded as the guide's
order upgrades it, while its callers keep calling:

- **The Authenticator** (step 2, so everything else still runs the previous
  code): the code before the commit that added its second newest migration,
  so that the drill crosses two (now 0016, the certificate sessions' entry,
  and 0017, the index of users' groups). A bot keeps
  connecting to the previous API with its certificate, each round on a new
  connection, so that the API authenticates it again
  (``AuthenticateCertificate``) and then files and changes an issue. A current
  replica starts with ``--migrate`` on the old one's port (``--reuse-port``:
  a pod and its replacement behind one Service) and migrates under it; both
  answer certificate authentications on the migrated schema; then the old one
  drains. No call of the bot fails, every acknowledged write is in the
  database, and the certificate keeps its one session across both releases.
- **The notifier** (step 4: the Model and the Authenticator are current): the
  code before its newest migration delivers mail (aiosmtpd) for a stream of
  changes; a current replica starts, migrates the notifier's schema under it,
  and the old one is stopped with SIGTERM. Every change's mail arrives exactly
  once, on its first attempt, and nothing is left pending or dead.

Like ``test_live_upgrade.py`` it needs the repository's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
from backup_drill import PAGE_TOKEN_SECRET
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from upgrade_support import (
    AUTH_MIGRATIONS,
    AUTH_SERVICE,
    NOTIFY_MIGRATIONS,
    PreviousRelease,
    previous_release,
    schema_version,
)

from bugless_api.client import BuglessClient
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_dev.processes import clean_environment
from bugless_dev.stack import LocalStack, RunningService, StackConfig
from bugless_proto import v1
from bugless_testing.metrics import metric_total
from bugless_testing.smtp import SmtpSink

HANDLED = "grpc_server_handled_total"
DELIVERIES = "bugless_notify_deliveries_total"
#: The old replicas' drain: long enough to be seen, as the chart's (shorter).
DRAIN = ["--drain-seconds", "1", "--grace-seconds", "10"]


def stacks(
    tmp_path: Path, postgres_server: ThrowawayPostgres, release: PreviousRelease, name: str
) -> tuple[LocalStack, LocalStack]:
    """A current stack and one running ``release``'s code, on the same databases and keys."""
    config = StackConfig(
        directory=tmp_path / "current",
        pki=LocalPki.open(tmp_path / "pki"),
        model_database_url=postgres_server.create_database(f"{name}_model"),
        auth_database_url=postgres_server.create_database(f"{name}_auth"),
        page_token_secret=PAGE_TOKEN_SECRET,
        session_key=f"{name}-drill-session-key-0123456789abcdef",
        notify_secret_key=f"{name}-drill-notify-key-0123456789abcdef",
    )
    current = LocalStack(config)
    previous = LocalStack(
        replace(
            config,
            directory=tmp_path / "previous",
            token_key_file=Path(current.env["BUGLESS_AUTH_TOKEN_KEY_FILES"]),
            base_env={**clean_environment(), "PYTHONPATH": release.python_path},
        )
    )
    return current, previous


def replica(stack: LocalStack, kind: str, port: int, name: str, *extra: str) -> RunningService:
    """A ``kind`` replica on ``port`` (0: any), shared with ``--reuse-port``; its own metrics."""
    args = [kind, "serve", "--port", str(port), "--reuse-port", "--metrics-port", "0"]
    return stack.start(kind, [*args, *DRAIN, *extra], name=name)


async def drained(service: RunningService, within: float = 30.0) -> int:
    """SIGTERM ``service`` and wait for its exit status."""
    service.process.signal(signal.SIGTERM)
    async with asyncio.timeout(within):
        while service.process.returncode is None:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.1)
    return service.process.returncode


@dataclass
class BotLoad:
    """A bot that reconnects every round: authenticated again, then files and changes.

    Attributes:
        failures: Each call that failed after the client's own retries.
        created: Acknowledged creates, issue id to title.
        changed: Acknowledged changes, (issue id, version) to comment.
        rounds: Rounds completed.
    """

    api: str
    bot: CertificateFiles
    ca: Path
    component_id: int
    failures: list[str] = field(default_factory=list)
    created: dict[int, str] = field(default_factory=dict)
    changed: dict[tuple[int, int], str] = field(default_factory=dict)
    rounds: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Rounds until :meth:`stop`; each failure is counted, none ends the load."""
        while not self._stop.is_set():
            self.rounds += 1
            try:
                async with BuglessClient(
                    self.api, cert=self.bot.cert, key=self.bot.key, ca=self.ca, timeout=20
                ) as client:
                    await client.whoami()
                    title = f"filed in round {self.rounds}"
                    issue = await client.create_issue(title, self.component_id, priority="P2")
                    self.created[issue.id] = title
                    comment = f"changed in round {self.rounds}"
                    reply = await client.update_issue(
                        issue.id, expected_version=issue.version, comment=comment
                    )
                    assert reply.issue is not None
                    self.changed[(issue.id, reply.issue.version)] = comment
            except Exception as exc:
                self.failures.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.05)

    async def rounds_past(self, count: int, within: float = 60.0) -> None:
        """Wait until ``count`` more rounds have run."""
        target = self.rounds + count
        async with asyncio.timeout(within):
            while self.rounds < target:  # noqa: ASYNC110 - a counter with no event
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


async def test_the_authenticator_upgrades_live_under_certificate_calls(
    postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    release = previous_release(tmp_path / "release", AUTH_MIGRATIONS, newest=2)
    assert len(release.auth_added) >= 2, release
    current, previous = stacks(tmp_path, postgres_server, release, "auth_upgrade")
    load: BotLoad | None = None
    running: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(previous.migrate)
        auth_version = await schema_version(previous.config.auth_database_url, "bugless_auth")
        old_auth = await asyncio.to_thread(replica, previous, "auth", 0, "auth-old")
        await asyncio.to_thread(previous.start_model)
        api = await asyncio.to_thread(previous.start_api)
        assert api.address is not None
        bot = previous.add_bot("upgrade-bot", admin=True)
        async with BuglessClient(
            api.address.authority, cert=bot.cert, key=bot.key, ca=previous.pki.ca_file
        ) as admin:
            component = await admin.create_component(
                "Auth upgrade", description="the drill's issues"
            )
        load = BotLoad(api.address.authority, bot, previous.pki.ca_file, component.id)
        running = asyncio.create_task(load.run())
        await load.rounds_past(3)

        # The Authenticator's step: a current replica beside the old one, which
        # it migrates under (``--migrate``, as the chart starts it).
        new_auth = await asyncio.to_thread(
            replica, current, "auth", old_auth.port, "auth-new", "--migrate"
        )
        version = await schema_version(current.config.auth_database_url, "bugless_auth")
        assert version == auth_version + len(release.auth_added), release.auth_added
        # Side by side: fresh connections to the shared port reach both, and
        # both stay ready and authenticate the bot's certificate on the
        # migrated schema; the old one says it serves on a newer schema.
        await _side_by_side(
            current,
            old_auth,
            new_auth,
            bot,
            f"the database schema is now at version {version}, newer than the {auth_version}",
        )
        await load.rounds_past(3)

        assert await drained(old_auth) == 0, old_auth.process.output()[-2000:]
        await load.rounds_past(5)
        assert (
            await metric_total(
                new_auth.metrics_port,
                HANDLED,
                grpc_method="AuthenticateCertificate",
                grpc_code="OK",
            )
            >= 5
        ), "the API's authentications did not move to the new replica"
        load.stop()
        await running

        assert load.failures == [], load.failures
        await _all_acknowledged_writes_found(current.config.model_database_url, load)
        assert (
            await _live_certificate_sessions(current.config.auth_database_url, "upgrade-bot") == 1
        )
    finally:
        if load is not None:
            load.stop()
        if running is not None:
            with contextlib.suppress(Exception):
                await running
        await asyncio.to_thread(current.stop)
        await asyncio.to_thread(previous.stop)


async def _side_by_side(
    stack: LocalStack, old: RunningService, new: RunningService, bot: CertificateFiles, said: str
) -> None:
    """Fresh connections to the shared port until both replicas have authenticated ``bot``.

    And until ``old`` has said ``said``: each connection asks health first, and
    the readiness check behind it reads the schema's version, which is when an
    old replica notices the migration (it logs it, and must stay SERVING).
    """

    async def answered(service: RunningService) -> float:
        return await metric_total(
            service.metrics_port, HANDLED, grpc_method="AuthenticateCertificate", grpc_code="OK"
        )

    before = {old.name: await answered(old), new.name: await answered(new)}
    address = replace(stack.client_address("auth", "api"), port=old.port)
    async with asyncio.timeout(60):
        while True:
            channel = address.channel()
            try:
                health = await HealthStub(channel).Check(
                    HealthCheckRequest(service=AUTH_SERVICE), timeout=10
                )
                assert health is not None
                assert health.status == HealthCheckResponse.SERVING
                reply = await v1.AuthenticatorStub(channel).authenticate_certificate(
                    v1.AuthenticateCertificateRequest(certificate_der=bot.der), timeout=10
                )
            finally:
                channel.close()
            assert reply.identity is not None
            assert reply.identity.user is not None
            assert reply.identity.user.username == "upgrade-bot"
            both = all([await answered(s) > before[s.name] for s in (old, new)])
            if both and said in old.log.read_text():
                return
            await asyncio.sleep(0.2)


async def _all_acknowledged_writes_found(database_url: str, load: BotLoad) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        titles: dict[int, str] = {
            r["id"]: r["title"]
            for r in await conn.fetch(
                "SELECT id, title FROM bugless.issues WHERE id = ANY($1::bigint[])",
                list(load.created),
            )
        }
        comments = {
            (r["issue_id"], r["version"]): r["comment"]
            for r in await conn.fetch(
                "SELECT issue_id, version, comment FROM bugless.issue_history "
                "WHERE issue_id = ANY($1::bigint[])",
                list(load.created),
            )
        }
    finally:
        await conn.close()
    assert load.created
    assert titles == load.created
    assert load.changed
    assert {k: comments.get(k) for k in load.changed} == load.changed


async def _live_certificate_sessions(database_url: str, username: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM bugless_auth.sessions s JOIN bugless_auth.users u "
            "USING (user_id) WHERE u.username = $1 AND s.certificate IS NOT NULL "
            "AND s.revoked_at IS NULL AND s.expires_at > now()",
            username,
        )
    finally:
        await conn.close()
    assert isinstance(count, int)
    return count


async def test_the_notifier_upgrades_live_and_mails_every_change_once(
    postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    release = previous_release(tmp_path / "release", NOTIFY_MIGRATIONS)
    assert release.notify_added, release
    current, previous = stacks(tmp_path, postgres_server, release, "notify_upgrade")
    changes: list[int] = []
    stop = asyncio.Event()
    filing: asyncio.Task[None] | None = None
    with SmtpSink() as sink:
        try:
            await asyncio.to_thread(current.migrate)
            await asyncio.to_thread(current.start_backends)
            admin = await asyncio.to_thread(current.add_user, "nadia", "pw-" + "x" * 12, admin=True)
            cc = await asyncio.to_thread(
                current.add_user, "carl", "pw-" + "y" * 12, email="carl@example.test"
            )
            caller = v1.Caller(user_id=admin["user_id"], admin=True)
            model = current.acting_model(v1.ModelStub(current.model.channel()))
            component = await model.create_component(
                v1.CreateComponentRequest(caller=caller, name="Notifier upgrade")
            )

            async def file_changes() -> None:
                """An issue every 0.3 s with carl in cc: one mail to carl each."""
                while not stop.is_set():
                    issue = await model.create_issue(
                        v1.CreateIssueRequest(
                            caller=caller,
                            fields=v1.IssueFields(
                                title=f"change {len(changes) + 1} of the notifier upgrade",
                                component_id=component.id,
                            ),
                            cc=[cc["user_id"]],
                        )
                    )
                    changes.append(issue.id)
                    await asyncio.sleep(0.3)

            flags = [
                *current.backend_flags(),
                *("--smtp-host", "127.0.0.1", "--smtp-port", str(sink.port)),
                *("--smtp-security", "none", "--public-url", "https://bugs.example.test"),
            ]
            old = await asyncio.to_thread(replica, previous, "notify", 0, "notify-old", *flags)
            notify_version = await schema_version(
                current.config.model_database_url, "bugless_notify"
            )
            filing = asyncio.create_task(file_changes())
            await sink.wait_for_async(2, 60)

            # The notifier's step: a current replica migrates its schema while
            # the old one goes on consuming and delivering, then the old one
            # is stopped as a rollout stops it.
            before = await metric_total(old.metrics_port, DELIVERIES, outcome="delivered")
            new = await asyncio.to_thread(replica, current, "notify", 0, "notify-new", *flags)
            version = await schema_version(current.config.model_database_url, "bugless_notify")
            assert version == notify_version + len(release.notify_added), release.notify_added
            # Side by side on the migrated schema: each replica delivers.
            async with asyncio.timeout(60):
                while not (  # noqa: ASYNC110 - other processes' counters
                    await metric_total(old.metrics_port, DELIVERIES, outcome="delivered") > before
                    and await metric_total(new.metrics_port, DELIVERIES, outcome="delivered") > 0
                ):
                    await asyncio.sleep(0.2)
            assert await drained(old) == 0, old.process.output()[-2000:]
            await asyncio.sleep(3.0)  # changes the new replica alone mails
            stop.set()
            await filing

            mails = await sink.wait_for_async(len(changes), 90)
            await asyncio.sleep(2.0)  # for any mail that should not come
            mails = sink.mails
            subjects = Counter(
                title
                for mail in mails
                for title in [str(mail.message["Subject"])]
                if "of the notifier upgrade" in title
            )
            assert len(subjects) == len(changes), "a change's mail was lost"
            assert set(subjects.values()) == {1}, f"mailed twice: {subjects}"
            assert not new.process.exited
            states = await _delivery_states(current.config.model_database_url)
            assert states == {("delivered", 1): len(changes)}, states
        finally:
            stop.set()
            if filing is not None:
                with contextlib.suppress(Exception):
                    await filing
            await asyncio.to_thread(current.stop)
            await asyncio.to_thread(previous.stop)


async def _delivery_states(database_url: str) -> dict[tuple[str, int], int]:
    """How many of the notifier's deliveries are in each (state, attempts)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT state, attempts, count(*) AS n FROM bugless_notify.deliveries "
            "GROUP BY state, attempts"
        )
    finally:
        await conn.close()
    return {(r["state"], r["attempts"]): r["n"] for r in rows}
