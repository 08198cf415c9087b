"""The one local-stack library: every bugless service as a subprocess on one machine.

``bugless dev``, the frontends' test sessions (:mod:`bugless_testing.stack`),
the HA drill (``deploy/ha``) and the benchmarks (``bench/``) all start
services here, so there is one environment map (built from
:class:`StackConfig` in :mod:`bugless_dev._stack_config`), one PKI, one way to
learn a port and probe health, and one stop order.

Each service runs exactly the command a deployment runs (``bugless model
serve`` …) with the environment :attr:`LocalStack.env` (the ``BUGLESS_*``
variables a Helm chart would set) and a port it picks itself (``--port 0``)
and reports through ``--ready-file``. :meth:`LocalStack.stop` stops the
frontends first (no request then reaches a backend that is gone), then the
backends; PostgreSQL belongs to the caller.

Typical use::

    pki = LocalPki.open(directory / "pki")
    stack = LocalStack(StackConfig(directory=directory, pki=pki,
                                   model_database_url=..., auth_database_url=...))
    stack.migrate()
    stack.start_backends()          # the Model and the Authenticator
    api = stack.start_api()         # mutual TLS, the stack's server certificate
    ...
    stack.stop()
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpclib.client import Channel

from bugless_core.assertions import sign_assertion
from bugless_core.clients import ActingFor, ServiceAddress, acting_model
from bugless_dev._stack_config import (
    FAST_PASSWORD_HASHING,
    TEST_POLICY,
    StackConfig,
    stack_environment,
)
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.processes import (
    BUGLESS_COMMAND,
    ServiceFailed,
    ServiceProcess,
    grpc_serving,
    http_ready,
    run_bugless,
    spawn,
)
from bugless_proto import v1

#: The gRPC service whose health says a service of each kind is ready.
HEALTH_SERVICE: Mapping[str, str] = {
    "model": "bugless.v1.Model",
    "auth": "bugless.v1.Authenticator",
    "api": "bugless.v1.Issues",
}
#: Stop order: a tier stops only once every tier before it has.
STOP_TIERS: tuple[tuple[str, ...], ...] = (("web", "api", "notify"), ("model", "auth"))


@dataclass
class RunningService:
    """A service a :class:`LocalStack` started.

    Attributes:
        kind: ``model``, ``auth``, ``api``, ``web`` (what its command serves).
        name: Unique name (log file ``logs/NAME.log``).
        process: The process.
        port: Where it listens.
        metrics_port: Where its ``/metrics`` is, when asked for (``--metrics-port 0``).
        address: How to reach it over gRPC (None for the web tier).
        url: ``http://127.0.0.1:PORT`` for the web tier, else None.
    """

    kind: str
    name: str
    process: ServiceProcess
    port: int
    metrics_port: int | None = None
    address: ServiceAddress | None = None
    url: str | None = None

    @property
    def log(self) -> Path:
        """Its output."""
        return self.process.log

    def stop(self) -> None:
        """Its graceful shutdown (killed if it does not end in time)."""
        self.process.stop()


class LocalStack:
    """Services of one local tracker; see the module docstring.

    Attributes:
        config: What it runs with.
        env: The one environment map every service and command gets.
        server: The server certificate of the API (and of TLS services).
        services: What is running, in start order.
    """

    def __init__(self, config: StackConfig) -> None:
        """Prepare (nothing runs until a ``start_*`` call)."""
        self.config = config
        self.directory = config.directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.server: CertificateFiles = config.pki.server_certificate()
        #: Each service's certificate (``spiffe://bugless/<service>``), by service.
        self.identities: dict[str, CertificateFiles] = {
            service: config.pki.service_certificate(service)
            for service in ("model", "auth", "web", "api", "notify", "admin")
        }
        self.services: list[RunningService] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._channels: list[Channel] = []
        self.env: dict[str, str] = stack_environment(config, self.identities)

    @property
    def pki(self) -> LocalPki:
        """The stack's CA and certificates."""
        return self.config.pki

    @property
    def model_database_url(self) -> str:
        """The Model's database (superuser DSN)."""
        return self.config.model_database_url

    @property
    def auth_database_url(self) -> str:
        """The Authenticator's database (superuser DSN)."""
        return self.config.auth_database_url

    # ---- reaching a service ----

    def client_address(self, kind: str, identity: str = "web") -> ServiceAddress:
        """How service ``identity`` reaches the first running ``kind`` (``model``, ``auth``).

        With the stack's mutual TLS, the address carries ``identity``'s
        certificate, so calls through it are checked as that service's
        (``web`` may run the password flow, ``api`` the certificate flow).
        """
        return self._address(kind, self.first(kind).port, identity=identity)

    # ---- one-off commands ----

    def run_bugless(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bugless ARGS...`` with the stack's environment.

        Raises:
            ServiceFailed: ``check`` is true and the command failed; the
                message quotes its output.
        """
        return run_bugless(args, self.env, input_text=input_text, check=check)

    def migrate(self) -> None:
        """Apply the Model's and the Authenticator's migrations (both at once)."""
        errors: list[BaseException] = []

        def migrate(service: str) -> None:
            try:
                self.run_bugless(service, "migrate")
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=migrate, args=(s,)) for s in ("model", "auth")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def add_user(
        self,
        username: str,
        password: str | None = None,
        *,
        groups: Sequence[str] = (),
        admin: bool = False,
        display_name: str = "",
        email: str = "",
    ) -> dict[str, Any]:
        """Create a local (password) user through ``bugless auth user add``.

        ``admin=True`` adds them to the ``admins`` group. Returns what the
        command printed with ``--json`` (``user_id``, and ``password`` when
        one was generated).
        """
        args = ["auth", "user", "add", username, "--json"]
        if password is not None:  # on standard input: never in a process listing
            args.append("--password-stdin")
        if display_name:
            args += ["--display-name", display_name]
        if email:
            args += ["--email", email]
        if groups:
            args += ["--groups", ",".join(groups)]
        if admin:
            args.append("--admin")
        output = self.run_bugless(*args, input_text=None if password is None else password + "\n")
        created: dict[str, Any] = json.loads(output.stdout)
        return created

    def add_bot(
        self, username: str, *, groups: Sequence[str] = (), admin: bool = False
    ) -> CertificateFiles:
        """Issue a client certificate for a bot and map it in the ``tls`` backend.

        The user itself is created by the Authenticator on the certificate's
        first authentication; the Authenticator re-reads the mapping on its
        next certificate check, so no restart is needed.
        """
        all_groups = [*groups, *(["admins"] if admin else [])]
        return self.pki.client_certificate_for(username, groups=all_groups)

    # ---- services ----

    def _name(self, kind: str, name: str | None) -> str:
        with self._lock:
            count = self._counts.get(kind, 0) + 1
            self._counts[kind] = count
        return name or (kind if count == 1 else f"{kind}#{count}")

    def backend_flags(self) -> list[str]:
        """``--model``/``--auth`` of a frontend: the first Model and Authenticator started."""
        return ["--model", self.model.authority, "--auth", self.auth.authority]

    def api_tls_flags(self) -> list[str]:
        """The API's mandatory mutual TLS: the stack's server certificate and CA."""
        return [
            "--tls-cert",
            str(self.server.cert),
            "--tls-key",
            str(self.server.key),
            "--client-ca",
            str(self.pki.ca_file),
        ]

    def spawn(
        self,
        kind: str,
        args: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        ready_file: bool = True,
    ) -> ServiceProcess:
        """Start ``bugless ARGS...`` as a service of ``kind``; it is not ready yet.

        With ``ready_file`` the command gets ``--ready-file`` (it must accept
        it: every ``serve`` command does). The caller waits for it
        (:meth:`wait_started`) or uses :meth:`start`, which does both.
        """
        service_name = self._name(kind, name)
        ready = self.directory / "run" / f"{service_name}.json" if ready_file else None
        if ready is not None:
            ready.parent.mkdir(parents=True, exist_ok=True)
        argv = [*BUGLESS_COMMAND, *args, *(["--ready-file", str(ready)] if ready else [])]
        return spawn(
            service_name,
            argv,
            {**self.env, **(env or {})},
            self.directory / "logs" / f"{service_name}.log",
            ready_file=ready,
        )

    def acting_model(self, model: v1.ModelStub, *, as_requested: bool = False) -> v1.ModelStub:
        """``model`` calling with an assertion for each request's ``caller``.

        For seeding and checking data behind the frontends' backs: an
        administrator's tool (the ``admin`` identity) asks the Authenticator
        for an assertion of the user each request names
        (:func:`bugless_core.clients.acting_model`). The channel it asks on is
        closed by :meth:`stop`. With ``as_requested`` the assertions are
        signed here instead (:meth:`assertion_for`) with exactly what each
        request's caller claims, for tests whose callers are made-up users
        the Authenticator does not know; no Authenticator is asked, so the
        stack need not run one.
        """
        if as_requested:  # no Authenticator asked: a stack may run none (--insecure-local)
            return acting_model(model, _SignedHere(self))
        channel = self.client_address("auth", "admin").channel()
        with self._lock:
            self._channels.append(channel)
        return acting_model(model, ActingFor(v1.AuthenticatorStub(channel)))

    def assertion_for(
        self,
        user_id: str,
        *,
        groups: Sequence[str] = (),
        permissions: Sequence[str] = (),
        ttl_seconds: float = 3600.0,
    ) -> str:
        """An identity assertion for ``user_id`` signed with the stack's own token key.

        For benchmarks that seed users the Authenticator does not know (their
        ids are written straight into the Model's tables): this stack holds
        the signing key, as no deployment's tools do. Everything else asks
        the Authenticator (:meth:`acting_model`).
        """
        key = serialization.load_pem_private_key(
            Path(self.env["BUGLESS_AUTH_TOKEN_KEY_FILES"]).read_bytes(), None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ServiceFailed("the stack's token key is not an Ed25519 key")
        assertion, _ = sign_assertion(
            key,
            user_id=user_id,
            groups=groups,
            permissions=permissions,
            session_id="",
            issuer="bugless-auth",
            ttl_seconds=ttl_seconds,
        )
        return assertion

    def wait_started(self, kind: str, process: ServiceProcess) -> RunningService:
        """Wait for a spawned service to listen and report ready (health or ``/readyz``).

        Raises:
            ServiceFailed: it exited or was not ready in time; quotes its log.
        """
        info = process.wait_ready_file()
        if kind == "web":
            url = f"http://127.0.0.1:{info.port}"
            process.wait_until(lambda: http_ready(f"{url}/readyz"))
            running = RunningService(
                kind, process.name, process, info.port, info.metrics_port, url=url
            )
        else:
            address = self._address(kind, info.port)
            health = HEALTH_SERVICE.get(kind, "")
            process.wait_until(lambda: grpc_serving(address, health))
            running = RunningService(
                kind, process.name, process, info.port, info.metrics_port, address=address
            )
        with self._lock:
            self.services.append(running)
            if kind == "auth" and "BUGLESS_MODEL_AUTH" not in self.env:
                self.env["BUGLESS_MODEL_AUTH"] = f"127.0.0.1:{running.port}"
        return running

    def start(
        self,
        kind: str,
        args: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunningService:
        """Start a service and wait until it is ready; stop it again if it never is."""
        process = self.spawn(kind, args, name=name, env=env)
        try:
            return self.wait_started(kind, process)
        except BaseException:
            process.stop()
            raise

    def _address(self, kind: str, port: int, *, identity: str = "web") -> ServiceAddress:
        if kind == "api":
            bot = self.pki.ensure("stack-probe", "stack-probe")[0]
            return ServiceAddress(
                "127.0.0.1", port, ca=self.pki.ca_file, cert=bot.cert, key=bot.key
            )
        if self.config.insecure_local:
            return ServiceAddress("127.0.0.1", port)
        files = self.identities.get(identity) or self.pki.service_certificate(identity)
        return ServiceAddress(
            "127.0.0.1", port, ca=self.pki.ca_file, cert=files.cert, key=files.key
        )

    def start_model(self, *extra: str, name: str | None = None) -> RunningService:
        """``bugless model serve`` on a port of its own choosing.

        It verifies identity assertions with the first Authenticator's keys
        (``BUGLESS_MODEL_AUTH``, set once one runs), so start that first.
        """
        args = ["model", "serve", "--port", "0", *extra]
        return self.start("model", args, name=name)

    def start_auth(
        self,
        *extra: str,
        name: str | None = None,
        authenticators: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, str]] | None = None,
        policy: Mapping[str, Sequence[str]] | None = None,
    ) -> RunningService:
        """``bugless auth serve``; another backend list, options or policy on request.

        Several Authenticators of one stack share its database and token keys,
        so a token one issues the others accept and the Model sees the same
        user ids; only the sign-in methods and the policy differ. Backend
        options go on the command line as ``--authenticator-option
        NAME.KEY=VALUE``, the way an operator passes them.
        """
        args = ["auth", "serve", "--port", "0"]
        if authenticators is not None:
            args += ["--authenticator", ",".join(authenticators)]
        for backend, values in (options or {}).items():
            for key, value in values.items():
                args += ["--authenticator-option", f"{backend}.{key}={value}"]
        env = None
        if policy is not None:
            env = {"BUGLESS_AUTH_POLICY": json.dumps({g: list(p) for g, p in policy.items()})}
        return self.start("auth", [*args, *extra], name=name, env=env)

    def start_backends(self) -> tuple[RunningService, RunningService]:
        """The Authenticator, then the Model (which verifies assertions with its keys)."""
        auth = self.start_auth()
        try:
            model = self.start_model()
        except BaseException:
            self.stop_service(auth)
            raise
        return model, auth

    def start_api(
        self, *extra: str, port: int = 0, name: str | None = None, reuse_port: bool = False
    ) -> RunningService:
        """``bugless api serve`` (mutual TLS with the stack's CA) on the first backends."""
        args = ["api", "serve", "--port", str(port), *self.backend_flags()]
        args += [*self.api_tls_flags()]
        args += ["--reuse-port"] if reuse_port else []
        return self.start("api", [*args, *extra], name=name)

    def start_notify(
        self, *extra: str, name: str | None = None, env: Mapping[str, str] | None = None
    ) -> RunningService:
        """``bugless notify serve`` on the first Model and Authenticator.

        ``env`` adds or overrides variables of this replica (the stack allows
        component webhooks to loopback; a test of the default empties that).
        """
        args = ["notify", "serve", "--port", "0", *self.backend_flags()]
        return self.start("notify", [*args, *extra], name=name, env=env)

    def start_web(
        self,
        *extra: str,
        port: int = 0,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        dev: bool = True,
    ) -> RunningService:
        """``bugless web serve`` on the first backends; ``--dev`` (plain HTTP) by default.

        ``extra`` flags come last, so they override (``--auth`` of another
        Authenticator); ``env`` adds or overrides variables of this replica.
        """
        args = ["web", "serve", *(["--dev"] if dev else []), "--port", str(port)]
        args += self.backend_flags()
        return self.start("web", [*args, *extra], name=name, env=env)

    # ---- what runs ----

    def first(self, kind: str) -> RunningService:
        """The first running service of ``kind``.

        Raises:
            ServiceFailed: none is running.
        """
        for service in self.services:
            if service.kind == kind and not service.process.exited:
                return service
        raise ServiceFailed(f"no {kind} service is running in this stack")

    @property
    def model(self) -> ServiceAddress:
        """The Model (the first one started), reached as the web tier (``web`` identity)."""
        address = self.first("model").address
        assert address is not None
        return address

    @property
    def auth(self) -> ServiceAddress:
        """The Authenticator (the first one started), reached as the web tier."""
        address = self.first("auth").address
        assert address is not None
        return address

    def stop_service(self, service: RunningService) -> None:
        """Stop one service and forget it."""
        service.stop()
        with self._lock:
            if service in self.services:
                self.services.remove(service)

    def stop(self) -> None:
        """Frontends first, then the backends; each with its graceful shutdown."""
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            with contextlib.suppress(Exception):  # its event loop may be gone already
                channel.close()
        for tier in (*STOP_TIERS, None):
            for service in [s for s in reversed(self.services) if tier is None or s.kind in tier]:
                self.stop_service(service)

    def kill(self) -> None:
        """Kill every service now (a second Ctrl-C)."""
        for service in self.services:
            service.process.kill()


class _SignedHere:
    """Assertions of exactly the callers requests name, signed with the stack's key.

    An :class:`~bugless_core.clients.AssertionSource` that needs no
    Authenticator; each call signs anew, so there is nothing to forget.
    """

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    def forget(self, user_id: str) -> None:
        """Nothing is kept: the next call signs a new assertion anyway."""

    async def assertion_for(self, caller: v1.Caller) -> str:
        permissions = [
            name
            for name, held in (("admin", caller.admin), ("import_issues", caller.import_issues))
            if held
        ]
        return self._stack.assertion_for(
            caller.user_id, groups=caller.groups, permissions=permissions
        )


__all__ = [
    "FAST_PASSWORD_HASHING",
    "HEALTH_SERVICE",
    "TEST_POLICY",
    "LocalStack",
    "RunningService",
    "StackConfig",
]
