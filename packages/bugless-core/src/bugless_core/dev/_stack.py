"""Bringing the whole tracker up on one machine, and down again, in order.

Order matters both ways. Up: PostgreSQL; migrations (Model and Authenticator,
concurrently); the Model and the Authenticator; the first administrator and a
first component, through the running services; then the two frontends. Down:
the frontends first (so no request reaches a backend that is gone), then the
backends, then PostgreSQL (fast shutdown: it waits for nothing but a
checkpoint). :class:`DevStack` keeps every child it started, so a failure at
any step stops exactly what is running.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bugless_core.clients import ServiceAddress, call
from bugless_core.dev._pki import DevPki, ensure_pki
from bugless_core.dev._postgres import PostgresInstall, locate, server_major_version
from bugless_core.dev._processes import (
    BUGLESS_COMMAND,
    Child,
    ServiceFailed,
    all_of,
    clean_environment,
    free_port,
    grpc_serving,
    http_ready,
    port_is_free,
    run_bugless,
    spawn,
)
from bugless_core.dev._state import StateDir, StateDirError, write_private
from bugless_proto import v1

#: Global permissions in the dev Authenticator: the admin group administers
#: everything, bots may create top-level components, everyone hotlists.
DEV_POLICY = {"admins": ["admin"], "bots": ["create_component"], "*": ["create_hotlist"]}
#: The component a fresh tracker starts with, so that an issue can be filed at once.
FIRST_COMPONENT = "General"


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
    """

    state_dir: Path
    port: int = 8080
    api_port: int = 50053
    reset: bool = False
    demo: bool = False
    admin_username: str = "admin"


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
        api: ``127.0.0.1:PORT`` of the gRPC API.
        model: The Model service (plaintext, loopback).
        auth: The Authenticator (plaintext, loopback).
        database_url: The tracker's database (superuser DSN, with password).
        pki: The certificates.
        admin: The first administrator.
        notes: Things the person should know (root, re-issued certificates).
    """

    web_url: str
    api: str
    model: ServiceAddress
    auth: ServiceAddress
    database_url: str
    pki: DevPki
    admin: Admin
    notes: list[str] = field(default_factory=list)


class PortInUse(StateDirError):
    """A port ``bugless dev`` was asked to use is taken."""


def resolve_port(requested: int, flag: str) -> int:
    """``requested``, or a free port for 0.

    Raises:
        PortInUse: the port is taken (the message names the flag to pass).
    """
    if requested == 0:
        return free_port()
    if not port_is_free(requested):
        raise PortInUse(f"port {requested} is in use; pass {flag}")
    return requested


class DevStack:
    """Every child process of one ``bugless dev`` run."""

    def __init__(self, settings: DevSettings, state: StateDir, echo: Callable[[str], None]) -> None:
        """Prepare to run with ``settings`` on the opened ``state`` directory."""
        self.settings = settings
        self.state = state
        self.echo = echo
        self.children: list[Child] = []
        self.postgres: PostgresInstall | None = None

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
        env = clean_environment()
        env["BUGLESS_DATABASE_URL"] = database_url
        env["BUGLESS_AUTH_DATABASE_URL"] = database_url
        self.echo("  migrating the Model and Authenticator schemas")
        await all_of(run_bugless(["model", "migrate"], env), run_bugless(["auth", "migrate"], env))
        pki, issued = ensure_pki(self.state.pki_dir)
        if issued and not self.state.created:
            notes.append("issued " + ", ".join(issued) + f" (in {pki.directory})")
        token_key = await self._token_key(env)
        model = ServiceAddress("127.0.0.1", free_port())
        auth = ServiceAddress("127.0.0.1", free_port())
        model_env = {**env, "BUGLESS_PAGE_TOKEN_SECRET": self.state.secret("page-token-secret")}
        auth_env = {
            **env,
            "BUGLESS_AUTH_AUTHENTICATORS": "local,tls",
            "BUGLESS_AUTH_TOKEN_KEY_FILES": str(token_key),
            "BUGLESS_AUTH_TLS_MAPPING_FILE": str(pki.mapping),
            "BUGLESS_AUTH_TLS_CA_FILE": str(pki.ca),
            "BUGLESS_AUTH_POLICY": json.dumps(DEV_POLICY),
        }
        quick_stop = ["--drain-seconds", "0", "--grace-seconds", "5"]
        model_child, auth_child = await all_of(
            self._spawn(
                "model", ["model", "serve", "--port", str(model.port), *quick_stop], model_env
            ),
            self._spawn("auth", ["auth", "serve", "--port", str(auth.port), *quick_stop], auth_env),
        )
        await all_of(
            model_child.wait_until(lambda: grpc_serving(model, "bugless.v1.Model")),
            auth_child.wait_until(lambda: grpc_serving(auth, "bugless.v1.Authenticator")),
        )
        self.echo(f"  model      127.0.0.1:{model.port}   auth  127.0.0.1:{auth.port}")
        admin = await self._ensure_admin(auth, env)
        await self._ensure_first_component(model, admin)
        backends = ["--model", f"127.0.0.1:{model.port}", "--auth", f"127.0.0.1:{auth.port}"]
        api_args = [
            "api", "serve", *backends, "--port", str(api_port), *quick_stop,
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--client-ca", str(pki.ca),
        ]  # fmt: skip
        web_args = ["web", "serve", "--dev", *backends, "--port", str(web_port), *quick_stop]
        web_env = {**env, "BUGLESS_WEB_SESSION_KEYS": self.state.secret("web-session-key")}
        api_child, web_child = await all_of(
            self._spawn("api", api_args, env), self._spawn("web", web_args, web_env)
        )
        api = ServiceAddress("127.0.0.1", api_port, ca=pki.ca, cert=pki.bot_cert, key=pki.bot_key)
        web_url = f"http://127.0.0.1:{web_port}"
        await all_of(
            api_child.wait_until(lambda: grpc_serving(api, "bugless.v1.Issues")),
            web_child.wait_until(lambda: http_ready(f"{web_url}/readyz")),
        )
        return Running(
            web_url=web_url,
            api=f"127.0.0.1:{api_port}",
            model=model,
            auth=auth,
            database_url=database_url,
            pki=pki,
            admin=admin,
            notes=notes,
        )

    async def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = await spawn(
            name, [*BUGLESS_COMMAND, *args], env, self.state.logs_dir / f"{name}.log"
        )
        self.children.append(child)
        return child

    async def _start_postgres(self, notes: list[str]) -> str:
        install = await asyncio.to_thread(locate, self.state.postgres_dir)
        self.postgres = install
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
        port = self.state.info.get("postgres_port")
        if not isinstance(port, int) or not port_is_free(port):
            port = free_port()
        child = await spawn(
            "postgres",
            install.server_command(port),
            clean_environment(),
            self.state.logs_dir / "postgres.log",
            identity=install.run_as_kwargs(),
            stop_signal=signal.SIGINT,
            cwd=install.root,
        )
        self.children.append(child)
        pid = child.process.pid

        async def ready() -> bool:
            return install.ready(pid)

        await child.wait_until(ready)
        self.state.remember(postgres_port=port, postgres_major=major)
        if fresh or not self.state.info.get("database_created"):
            await _create_database(install, port)
            self.state.remember(database_created=True)
        self.echo(f"  postgres   127.0.0.1:{port}   (PostgreSQL {major}, {install.bin_dir})")
        return install.url(port)

    async def _token_key(self, env: dict[str, str]) -> Path:
        path = self.state.secrets_dir / "auth-token-key.pem"
        if not path.is_file():
            write_private(path, await run_bugless(["auth", "keygen"], env))
        return path

    async def _ensure_admin(self, auth: ServiceAddress, env: dict[str, str]) -> Admin:
        username = self.settings.admin_username
        channel = auth.channel()
        try:
            stub = v1.AuthenticatorStub(channel)
            found = await call(stub.lookup_users, v1.LookupUsersRequest(usernames=[username]))
        finally:
            channel.close()
        for user in found.users:
            if user.username == username:
                return Admin(username=username, user_id=user.user_id, password=None)
        output = await run_bugless(
            [
                "auth",
                "user",
                "add",
                username,
                "--admin",
                "--json",
                "--display-name",
                "Administrator",
            ],
            env,
        )
        created = json.loads(output)
        return Admin(username=username, user_id=created["user_id"], password=created["password"])

    async def _ensure_first_component(self, model: ServiceAddress, admin: Admin) -> None:
        """Create :data:`FIRST_COMPONENT` when the tree is empty (a fresh tracker)."""
        channel = model.channel()
        try:
            stub = v1.ModelStub(channel)
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

    # ---- run and stop ----

    async def wait_for_unexpected_exit(self) -> Child:
        """Block until some child exits (nothing should while running); return it."""
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop(self) -> None:
        """Frontends, then backends, then PostgreSQL; each gets its graceful shutdown."""
        tiers = (("web", "api"), ("model", "auth"), ("postgres",))
        for names in tiers:
            await all_of(*(c.stop() for c in self.children if c.name in names))
        self.children.clear()

    def kill(self) -> None:
        """A second Ctrl-C: kill the services now; PostgreSQL gets an immediate shutdown."""
        for child in self.children:
            if child.name == "postgres":
                if not child.exited:
                    child.process.send_signal(signal.SIGQUIT)
            else:
                child.kill()


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


__all__ = ["Admin", "DevSettings", "DevStack", "PortInUse", "Running", "resolve_port"]
