"""Bringing the whole tracker up on one machine, and down again, in order.

``bugless dev`` is the local-stack library (:mod:`bugless_dev.stack`) on a
lasting PostgreSQL cluster in the state directory. Up: PostgreSQL; the Model's
and the Authenticator's migrations; the Model and the Authenticator; the first
administrator and a first component, through the running services; a local
SMTP sink (:mod:`bugless_dev.mailsink`) and the two frontends (the web shows
the sink's mails at ``/dev/mail``); after any demo seeding, the notifier,
mailing to the sink (or, with ``--smtp-relay``, to that SMTP server, with no
sink and no ``/dev/mail``). Down: the frontends and the notifier, the
backends, PostgreSQL (fast shutdown), the sink. :class:`DevStack` keeps everything it
started, so a failure at any step stops exactly what is running.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bugless_core.clients import ServiceAddress, call
from bugless_core.settings import setting
from bugless_dev._cluster import PostgresInstall, locate, server_major_version
from bugless_dev._stack_config import SERVICE_KINDS
from bugless_dev._state import StateDir, StateDirError
from bugless_dev.mailsink import MailSink
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.processes import (
    RESERVATION_ADMITS_SERVER,
    ServiceFailed,
    ServiceProcess,
    clean_environment,
    reserve_port,
    spawn,
    unused_port,
)
from bugless_dev.stack import LocalStack, RunningService, StackConfig
from bugless_proto import v1

#: Global permissions in the dev Authenticator: the admin group administers
#: everything, bots may create top-level components, everyone hotlists.
DEV_POLICY = {
    "admins": ["admin", "import_issues"],
    "bots": ["create_component"],
    "*": ["create_hotlist"],
}
#: The component a fresh tracker starts with, so that an issue can be filed at once.
FIRST_COMPONENT = "General"
#: The bot a development client certificate maps to, and its groups.
BOT_USERNAME = "dev-bot"
BOT_GROUPS = ("bots",)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class DevSettings:
    """What ``bugless dev`` is configured with (flags and ``BUGLESS_DEV_*``).

    Attributes:
        state_dir: Where everything that survives a restart lives.
        port: The web UI's HTTP port; 0 picks a free one.
        api_port: The gRPC API's port (mutual TLS); 0 picks a free one.
        reset: Wipe the state directory first.
        demo: Seed demo data (once per state directory).
        admin_username: The first administrator, created on the first start.
        insecure_local: Run the services in plaintext without service
            identities (debugging only; every service warns at start).
        smtp_relay: ``HOST:PORT`` of an SMTP server the notifier mails to
            instead of the built-in sink (a local aiosmtpd or MailHog, to
            read the mails in a client); "" for the sink.
        digest_interval_seconds: Send the daily digests this often instead
            (0: daily, at the notifier's default hour), to see one at once.
    """

    state_dir: Path = setting(
        Path(".bugless"),
        help="Where the database, certificates, secrets and logs are kept between runs.",
    )
    port: int = setting(8080, help="HTTP port of the web UI; 0 picks a free one.")
    api_port: int = setting(50053, help="Port of the gRPC API (mutual TLS); 0 picks a free one.")
    reset: bool = setting(False, flag="--reset", help="Delete the state directory's data first.")
    demo: bool = setting(
        False,
        flag="--demo",
        help="Seed demo data: people, a component tree (one with an ACL), hotlists and a few "
        "hundred issues with comments, status changes and relations (once per state directory).",
    )
    admin_username: str = setting(
        "admin", help="The first administrator, created on the first start."
    )
    insecure_local: bool = setting(
        False,
        help="Plaintext between the services, no service identities checked (debugging "
        "only; every service logs a warning). By default they use mutual TLS.",
    )
    smtp_relay: str = setting(
        "",
        metavar="HOST:PORT",
        help="Mail the notifier's messages to this SMTP server (plain SMTP, no TLS or login: "
        "a local aiosmtpd, say) instead of the built-in sink; /dev/mail is then off.",
    )
    digest_interval_seconds: float = setting(
        0.0,
        help="Send the daily digests this often (seconds) instead of once a day at 07:00 UTC, "
        "to see what a person who chose 'A daily digest' gets; 0: daily.",
    )

    def __post_init__(self) -> None:
        for name in ("port", "api_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 65535")
        if self.port == self.api_port != 0:
            raise ValueError(
                f"--port and --api-port are both {self.port}; give them different ports"
            )
        if self.smtp_relay:
            self.relay_address()
        if self.digest_interval_seconds < 0:
            raise ValueError("--digest-interval-seconds must be 0 (daily) or more")

    def relay_address(self) -> tuple[str, int] | None:
        """``--smtp-relay`` as a host and a port; None for the built-in sink.

        Raises:
            ValueError: it is not HOST:PORT with a port from 1 to 65535.
        """
        if not self.smtp_relay:
            return None
        host, _, port = self.smtp_relay.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"--smtp-relay must be HOST:PORT (127.0.0.1:8025, say), not {self.smtp_relay!r}"
            )
        return host, int(port)


@dataclass
class Admin:
    """The first administrator.

    Attributes:
        username: Their username.
        user_id: Their opaque id.
        password: The generated password when this run created them, else None
            (it was shown once, when they were created, and is stored hashed).
    """

    username: str
    user_id: str
    password: str | None

    @property
    def caller(self) -> v1.Caller:
        """A Model caller with global admin rights."""
        return v1.Caller(user_id=self.user_id, groups=["admins"], admin=True)


@dataclass
class Running:
    """Where everything listens, once :meth:`DevStack.start` returned.

    Attributes:
        web_url: ``http://127.0.0.1:PORT``.
        mail_url: The page showing what the notifier mailed (the dev SMTP
            sink); "" when it mails to ``--smtp-relay``.
        api: ``127.0.0.1:PORT`` of the gRPC API.
        model: The Model service (loopback).
        auth: The Authenticator (loopback).
        database_url: The tracker's database (superuser DSN, with password).
        ca: The development CA (``BUGLESS_CA``).
        bot: The bot's client certificate (``BUGLESS_CERT``/``BUGLESS_KEY``).
        importer: The import job's certificate (``spiffe://bugless/import``),
            for ``bugless import`` run against this stack.
        admin: The first administrator.
        stack: The services, for more commands (``run_bugless``).
        notes: Things the person should know (root, re-issued certificates).
        mail_relay: ``--smtp-relay`` when the notifier mails there, else "".
    """

    web_url: str
    mail_url: str
    api: str
    model: ServiceAddress
    auth: ServiceAddress
    database_url: str
    ca: Path
    bot: CertificateFiles
    importer: CertificateFiles
    admin: Admin
    stack: LocalStack
    notes: list[str] = field(default_factory=list)
    mail_relay: str = ""


class PortInUse(StateDirError):
    """A port ``bugless dev`` was asked to use is taken."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, as servers set).

    Only a diagnostic before start-up (a clear "pass --port" instead of a
    service's bind error); the service binds the port itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def check_port(requested: int, flag: str) -> int:
    """``requested`` (0 means "any", which the service picks itself).

    Raises:
        PortInUse: the port is taken (the message names the flag to pass).
    """
    if requested != 0 and not port_is_free(requested):
        raise PortInUse(f"port {requested} is in use; pass {flag}")
    return requested


async def all_of(*aws: Awaitable[T]) -> list[T]:
    """Await concurrently; on the first failure cancel the rest and raise it.

    :func:`asyncio.gather` would leave the others running; a task group does
    not, but raises an exception group, which callers here do not want to
    unpack.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(aw)) for aw in aws]
    except BaseExceptionGroup as exc:
        first = exc.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw


class DevStack:
    """PostgreSQL and the services of one ``bugless dev`` run."""

    def __init__(self, settings: DevSettings, state: StateDir, echo: Callable[[str], None]) -> None:
        """Prepare to run with ``settings`` on the opened ``state`` directory."""
        self.settings = settings
        self.state = state
        self.echo = echo
        self.postgres: ServiceProcess | None = None
        self.services: LocalStack | None = None
        self.mail_sink: MailSink | None = None
        self.notify_port = 0
        # The notifier's port, held from before the web starts (which must be
        # told where the notifier is) until the notifier listens on it.
        self._notify_reservation: socket.socket | None = None

    # ---- start ----

    async def start(self, web_port: int, api_port: int) -> Running:
        """Start everything; on any failure the caller's :meth:`stop` cleans up.

        Raises:
            ServiceFailed: a service did not start (the message quotes its log).
            PostgresUnavailable: no PostgreSQL, or it would not start.
            StateDirError: the cluster was made by another PostgreSQL major.
        """
        notes: list[str] = []
        database_url = await self._start_postgres(notes)
        pki = await asyncio.to_thread(LocalPki.open, self.state.pki_dir, organisation="bugless dev")
        bot, issued = await asyncio.to_thread(self._bot_certificate, pki)
        if (pki.renewed_ca or issued) and not self.state.created:
            notes.append(f"issued new development certificates (in {pki.directory})")
        stack = LocalStack(
            StackConfig(
                directory=self.state.path,
                pki=pki,
                model_database_url=database_url,
                auth_database_url=database_url,
                policy=DEV_POLICY,
                fast_password_hashing=False,
                drain_seconds=0.0,
                grace_seconds=5.0,
                page_token_secret=self.state.secret("page-token-secret"),
                session_key=self.state.secret("web-session-key"),
                notify_secret_key=self.state.secret("notify-secret-key"),
                insecure_local=self.settings.insecure_local,
                # The development CA is also the people CA: `bugless login`
                # works against `bugless dev`, and the API already trusts it.
                extra_env={
                    "BUGLESS_AUTH_PEOPLE_CA_CERT": str(pki.ca_file),
                    "BUGLESS_AUTH_PEOPLE_CA_KEY": str(pki.directory / "ca.key"),
                    # Every service serves Prometheus /metrics on a free
                    # loopback port (printed at the start), as a deployment
                    # does on --metrics-port: an operator trying bugless
                    # reads them, and the alerts' series, before deploying.
                    **{f"BUGLESS_{kind.upper()}_METRICS_PORT": "0" for kind in SERVICE_KINDS},
                },
            )
        )
        self.services = stack
        self.echo("  migrating the Model and Authenticator schemas")
        await asyncio.to_thread(stack.migrate)
        model, auth = await asyncio.to_thread(stack.start_backends)
        self.echo(f"  model      127.0.0.1:{model.port}   auth  127.0.0.1:{auth.port}")
        admin = await self._ensure_admin(stack)
        await self._ensure_first_component(stack, admin)
        web_flags: list[str] = []
        if self.settings.relay_address() is None:
            sink = self.mail_sink = MailSink(self.state.path / "mail")
            await sink.start()
            web_flags += ["--dev-mailbox", str(sink.directory)]
        # The notifier starts last (start_notifier) and needs the web's URL,
        # while the web's admin page of failed deliveries needs the
        # notifier's address: its port is reserved now (nothing else can
        # take it) and bound by the notifier later.
        self._notify_reservation = reserve_port()
        self.notify_port = self._notify_reservation.getsockname()[1]
        web_flags += ["--notify", f"127.0.0.1:{self.notify_port}"]
        # The API access page shows the whole `bugless login` command: this
        # API's address and the development CA.
        web_flags += ["--api-ca-hint", str(pki.ca_file)]
        start_api = asyncio.to_thread(stack.start_api, port=api_port)
        if api_port:  # known now: both start at once
            api, web = await all_of(
                start_api,
                asyncio.to_thread(
                    stack.start_web,
                    *web_flags,
                    "--api-public-address",
                    f"127.0.0.1:{api_port}",
                    port=web_port,
                ),
            )
        else:  # a free port, known once the API listens
            api = await start_api
            web = await asyncio.to_thread(
                stack.start_web,
                *web_flags,
                "--api-public-address",
                f"127.0.0.1:{api.port}",
                port=web_port,
            )
        assert web.url is not None
        return Running(
            web_url=web.url,
            mail_url=f"{web.url}/dev/mail" if self.mail_sink is not None else "",
            mail_relay="" if self.mail_sink is not None else self.settings.smtp_relay.strip(),
            api=f"127.0.0.1:{api.port}",
            model=stack.model,
            auth=stack.auth,
            database_url=database_url,
            ca=pki.ca_file,
            bot=bot,
            importer=await asyncio.to_thread(pki.service_certificate, "import"),
            admin=admin,
            stack=stack,
            notes=notes,
        )

    @staticmethod
    def _bot_certificate(pki: LocalPki) -> tuple[CertificateFiles, bool]:
        files, issued = pki.ensure(BOT_USERNAME, BOT_USERNAME)
        pki.map_subject(BOT_USERNAME, BOT_USERNAME, groups=BOT_GROUPS)
        return files, issued

    async def _start_postgres(self, notes: list[str]) -> str:
        install = await asyncio.to_thread(locate, self.state.postgres_dir)
        if install.run_as is not None:
            notes.append(
                f"running as root: PostgreSQL runs as the system user `{install.run_as}` "
                "(created if it did not exist; PostgreSQL refuses to run as root)"
            )
        major = await asyncio.to_thread(server_major_version, install.bin_dir)
        found = install.data_major_version()
        if install.initialised and found is not None and found != major:
            msg = (
                f"the database in {install.data_dir} was made by PostgreSQL {found}, but the "
                f"PostgreSQL found now ({install.bin_dir}) is {major}: install PostgreSQL {found}, "
                "or pass --reset to delete the data and start over"
            )
            raise StateDirError(msg)
        fresh = not install.initialised
        if fresh:
            if install.root.exists():  # a first start that was interrupted
                await asyncio.to_thread(_remove_tree, install.root)
            self.echo(f"  creating a PostgreSQL {major} cluster in {install.data_dir}")
            password = self.state.secret("postgres-password")
            await asyncio.to_thread(install.initialise, password)
        elif await asyncio.to_thread(install.stop_leftover):
            notes.append("stopped a PostgreSQL left running by an earlier bugless dev")
        notes.extend(install.notes)
        remembered = self.state.info.get("postgres_port")
        port = remembered if isinstance(remembered, int) and port_is_free(remembered) else None
        if port is None:
            port = await asyncio.to_thread(unused_port)
        child = spawn(
            "postgres",
            install.server_command(port),
            clean_environment(),
            self.state.logs_dir / "postgres.log",
            identity=install.run_as_kwargs(),
            stop_signal=signal.SIGINT,
            stop_now_signal=signal.SIGQUIT,
            cwd=install.root,
        )
        self.postgres = child
        await asyncio.to_thread(child.wait_until, lambda: install.ready(child.pid))
        self.state.remember(postgres_port=port, postgres_major=major)
        if fresh or not self.state.info.get("database_created"):
            await _create_database(install, port)
            self.state.remember(database_created=True)
        self.echo(f"  postgres   127.0.0.1:{port}   (PostgreSQL {major}, {install.bin_dir})")
        return install.url(port)

    async def _ensure_admin(self, stack: LocalStack) -> Admin:
        username = self.settings.admin_username
        channel = stack.auth.channel()
        try:
            stub = v1.AuthenticatorStub(channel)
            found = await call(stub.lookup_users, v1.LookupUsersRequest(usernames=[username]))
        finally:
            channel.close()
        for user in found.users:
            if user.username == username:
                return Admin(username=username, user_id=user.user_id, password=None)
        # A local address, so the notifier's mails to them land in the dev mailbox.
        created = await asyncio.to_thread(
            stack.add_user,
            username,
            admin=True,
            display_name="Administrator",
            email=f"{username}@localhost",
        )
        return Admin(username=username, user_id=created["user_id"], password=created["password"])

    async def _ensure_first_component(self, stack: LocalStack, admin: Admin) -> None:
        """Create :data:`FIRST_COMPONENT` when the tree is empty (a fresh tracker)."""
        channel = stack.model.channel()
        try:
            stub = stack.acting_model(v1.ModelStub(channel))
            listed = await call(
                stub.list_components,
                v1.ListComponentsRequest(
                    caller=admin.caller, include_archived=True, page=v1.PageRequest(page_size=1)
                ),
            )
            if not listed.components:
                await call(
                    stub.create_component,
                    v1.CreateComponentRequest(
                        caller=admin.caller,
                        name=FIRST_COMPONENT,
                        description="Anything that has no better home yet.",
                    ),
                )
        finally:
            channel.close()

    async def start_notifier(self, running: Running) -> int:
        """``bugless notify serve`` mailing to the dev sink (or the relay); returns its port.

        Started last (after any demo seeding): the notifier's first start
        begins at the feed's head, so a fresh ``--demo`` does not mail
        about hundreds of made-up changes while the machine is busy
        seeding them.
        """
        assert self.services is not None
        relay = self.settings.relay_address()
        if relay is None:
            assert self.mail_sink is not None
            smtp_host, smtp_port = "127.0.0.1", self.mail_sink.port
        else:
            smtp_host, smtp_port = relay
        if not RESERVATION_ADMITS_SERVER:
            self._release_notify_port()
        digests: list[str] = []
        if self.settings.digest_interval_seconds:
            digests = ["--digest-interval-seconds", str(self.settings.digest_interval_seconds)]
        try:
            await asyncio.to_thread(
                self.services.start_notify,
                *digests,
                *("--smtp-host", smtp_host, "--smtp-port", str(smtp_port)),
                *("--smtp-security", "none", "--smtp-sender", "bugless dev <bugless@localhost>"),
                *("--public-url", running.web_url, "--port", str(self.notify_port)),
            )
        finally:
            self._release_notify_port()
        where = "the dev SMTP sink" if relay is None else "the SMTP relay"
        self.echo(f"  notifier   mailing to {where} {smtp_host}:{smtp_port}")
        return smtp_port

    def _release_notify_port(self) -> None:
        if self._notify_reservation is not None:
            self._notify_reservation.close()
            self._notify_reservation = None

    # ---- run and stop ----

    def _children(self) -> list[tuple[str, ServiceProcess]]:
        children = [(s.name, s.process) for s in self.services.services] if self.services else []
        if self.postgres is not None:
            children.append(("postgres", self.postgres))
        return children

    async def wait_for_unexpected_exit(self) -> tuple[str, ServiceProcess]:
        """Block until some child exits (nothing should while running); return it."""
        while True:
            for name, process in self._children():
                if process.exited:
                    return name, process
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Frontends, then backends, then PostgreSQL; each gets its graceful shutdown."""
        if self.services is not None:
            await asyncio.to_thread(self.services.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
            self.postgres = None
        if self.mail_sink is not None:
            await self.mail_sink.stop()
            self.mail_sink = None
        self._release_notify_port()

    def kill(self) -> None:
        """A second Ctrl-C: kill the services now; PostgreSQL gets an immediate shutdown."""
        if self.services is not None:
            self.services.kill()
        if self.postgres is not None:
            self.postgres.signal(signal.SIGQUIT)


def _remove_tree(path: Path) -> None:
    import shutil  # noqa: PLC0415

    shutil.rmtree(path)


async def _create_database(install: PostgresInstall, port: int) -> None:
    env = {**clean_environment(), "PGPASSWORD": install.password()}
    process = await asyncio.create_subprocess_exec(
        *install.create_database_command(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0 and "already exists" not in text:
        raise ServiceFailed(f"createdb failed: {text}")


__all__ = [
    "Admin",
    "DevSettings",
    "DevStack",
    "PortInUse",
    "Running",
    "RunningService",
    "all_of",
    "check_port",
]
