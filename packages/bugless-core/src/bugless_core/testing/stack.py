"""The real backend services, started for a frontend's test session.

Frontends (the web UI, the API gateway) are tested against the real Model on
a real PostgreSQL and the real Authenticator, not against fakes of them. This
pytest plugin starts both **as subprocesses through the ``bugless`` CLI**, the
way an operator runs them, so core never imports a backend package and a
frontend's tests exercise the very commands a deployment uses. Enable it in a
conftest::

    pytest_plugins = ["bugless_core.testing.postgres", "bugless_core.testing.stack"]

and ask for the session fixture ``bugless_stack`` (a :class:`BuglessStack`):
``model`` and ``auth`` are :class:`~bugless_core.clients.ServiceAddress` es,
:meth:`BuglessStack.add_user` creates password users through ``bugless auth
user add``, and :attr:`BuglessStack.pki` is a per-session trustme CA that
mints server and client certificates.

Tests that need an Authenticator configured otherwise (another policy, an
OIDC provider) start a second one on the same database and keys with
:meth:`BuglessStack.start_authenticator`; the module-scoped fixture
``bugless_oidc_auth`` is one with ``--authenticator local,tls,oidc`` trusting
the mock provider of :mod:`bugless_core.testing.oidc_provider` (list that
plugin too). The session's own Authenticator is left as it is, so tests that
do not sign in through a provider do not wait for one.

Bots authenticate by certificate through the Authenticator's ``tls`` backend:
:meth:`BuglessStack.add_bot` mints a certificate and maps its CN to a username
(the Authenticator creates that user on first sight). Every process is stopped
with SIGTERM at the end of the session (and killed if it does not exit within
its drain time); their output is kept in files under the session's temporary
directory and quoted when a service fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bugless_core.clients import ServiceAddress
from bugless_core.testing.ports import free_port

if TYPE_CHECKING:
    import trustme

    from bugless_core.testing.oidc_provider import OidcProvider
    from bugless_core.testing.postgres import PostgresTestServer

#: How a subprocess runs the ``bugless`` command of this interpreter's install.
BUGLESS_COMMAND: tuple[str, ...] = (
    sys.executable,
    "-c",
    "from bugless_core.cli import main; main()",
)
_START_TIMEOUT_SECONDS = 60.0
_STOP_TIMEOUT_SECONDS = 30.0


def _health_status(address: ServiceAddress, service: str) -> str | None:
    """The gRPC health status name of ``service``, or None when unreachable.

    Runs its own event loop on a helper thread, so it works from sync fixtures
    and from inside a running loop alike.
    """
    from grpclib.health.v1.health_grpc import HealthStub  # noqa: PLC0415
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse  # noqa: PLC0415

    async def check() -> str | None:
        channel = address.channel()
        try:
            reply = await HealthStub(channel).Check(
                HealthCheckRequest(service=service), timeout=2.0
            )
        except Exception:  # any failure means "not up yet"
            return None
        finally:
            channel.close()
        name: str = HealthCheckResponse.ServingStatus.Name(reply.status)
        return name

    result: list[str | None] = [None]

    def target() -> None:
        result[0] = asyncio.run(check())

    thread = threading.Thread(target=target, name="bugless-stack-health")
    thread.start()
    thread.join()
    return result[0]


@dataclass
class ServiceProcess:
    """One ``bugless ... serve`` subprocess and where its output goes.

    Attributes:
        name: Short name for messages (``model``, ``auth``).
        process: The running process.
        log: File holding its stdout and stderr.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the process printed so far (for failure messages)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_serving(self, address: ServiceAddress, service: str) -> None:
        """Block until health reports ``service`` SERVING.

        Raises:
            RuntimeError: The process exited, or did not become SERVING in
                time; the message quotes its output.
        """
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (
                    f"bugless {self.name} serve exited with {self.process.returncode} "
                    f"before serving:\n{self.output()}"
                )
                raise RuntimeError(msg)
            if _health_status(address, service) == "SERVING":
                return
            time.sleep(0.1)
        msg = (
            f"bugless {self.name} serve was not SERVING within {_START_TIMEOUT_SECONDS:.0f}s:\n"
            f"{self.output()}"
        )
        raise RuntimeError(msg)

    def stop(self) -> None:
        """SIGTERM, wait for the drain, kill only if it does not end."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate and its key, written as PEM files.

    Attributes:
        cert: PEM certificate (leaf only).
        key: PEM private key.
        common_name: The subject CN (what the ``tls`` authenticator maps).
        der: The certificate in DER form, as a server sees it after the
            handshake.
    """

    cert: Path
    key: Path
    common_name: str
    der: bytes


@dataclass
class StackPki:
    """A per-session certificate authority and the tls authenticator's mapping.

    Attributes:
        directory: Where every file is written.
        ca: The trustme CA (its key signs every certificate minted here).
        ca_file: PEM bundle of ``ca``: the ``--client-ca`` of an mTLS
            frontend and the ``-cacert`` of a client.
        mapping_file: The ``tls`` authenticator's mapping (JSON: lower-case CN
            to ``{"username", "groups", "bot"}``); rewritten by :meth:`map_subject`.
        server: A server certificate for ``127.0.0.1`` and ``localhost``.
    """

    directory: Path
    ca: trustme.CA
    ca_file: Path
    mapping_file: Path
    server: CertificateFiles
    _mapping: dict[str, dict[str, object]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, directory: Path) -> StackPki:
        """A fresh CA, server certificate and empty mapping under ``directory``."""
        import trustme  # noqa: PLC0415 - a test-only dependency

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        mapping_file = directory / "tls-subjects.json"
        mapping_file.write_text("{}\n")
        server_leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="localhost")
        server = _write_leaf(directory, "server", server_leaf, "localhost")
        return cls(
            directory=directory, ca=ca, ca_file=ca_file, mapping_file=mapping_file, server=server
        )

    def issue_client_certificate(
        self,
        common_name: str,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> CertificateFiles:
        """Mint a client certificate for ``common_name`` (not mapped to anyone).

        ``not_before``/``not_after`` make certificates outside their validity
        (an expired bot certificate) signed by the same trusted CA.
        """
        leaf = self.ca.issue_cert(
            f"{common_name}.clients.invalid",
            common_name=common_name,
            not_before=not_before,
            not_after=not_after,
        )
        stem = f"client-{common_name}-{secrets.token_hex(3)}"
        return _write_leaf(self.directory, stem, leaf, common_name)

    def map_subject(
        self,
        common_name: str,
        username: str,
        *,
        groups: Sequence[str] = (),
        bot: bool = True,
    ) -> None:
        """Record that certificates with CN ``common_name`` are ``username``.

        The entry is in the ``tls`` authenticator's mapping format (the
        groups travel with it: a certificate identity is its own user, apart
        from a local user of the same name). The Authenticator reads the file
        when it starts, so :meth:`BuglessStack.add_bot` restarts it. The file
        is replaced atomically, so it is never read half-written.
        """
        with self._lock:
            self._mapping[common_name.lower()] = {
                "username": username,
                "groups": list(groups),
                "bot": bot,
            }
            temporary = self.mapping_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._mapping, indent=2, sort_keys=True) + "\n")
            temporary.replace(self.mapping_file)

    def client_certificate_for(
        self, username: str, *, groups: Sequence[str] = (), bot: bool = True
    ) -> CertificateFiles:
        """Mint a certificate with CN ``<username>.bot`` and map it to ``username``."""
        common_name = f"{username}.bot"
        files = self.issue_client_certificate(common_name)
        self.map_subject(common_name, username, groups=groups, bot=bot)
        return files


def _write_leaf(
    directory: Path, stem: str, leaf: trustme.LeafCert, common_name: str
) -> CertificateFiles:
    import ssl  # noqa: PLC0415

    cert = directory / f"{stem}.pem"
    key = directory / f"{stem}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return CertificateFiles(cert=cert, key=key, common_name=common_name, der=der)


@dataclass
class ExtraAuthenticator:
    """A second Authenticator of a stack (:meth:`BuglessStack.start_authenticator`).

    Attributes:
        address: Where it listens (plaintext on loopback).
        service: Its process and log.
    """

    address: ServiceAddress
    service: ServiceProcess

    def stop(self) -> None:
        """SIGTERM and wait (a no-op once stopped)."""
        self.service.stop()


#: Group → global permissions the stack's Authenticator runs with.
STACK_POLICY: Mapping[str, Sequence[str]] = {
    "admins": ["admin"],
    "component-creators": ["create_component"],
    "*": ["create_hotlist"],
}


@dataclass
class BuglessStack:
    """The Model and the Authenticator, running, for one test session.

    Attributes:
        model: Where ``bugless.v1.Model`` listens (plaintext on loopback).
        auth: Where ``bugless.v1.Authenticator`` listens (plaintext on loopback).
        pki: The session CA; certificates for frontends and bots.
        model_database_url: The Model's database (superuser DSN).
        auth_database_url: The Authenticator's database (superuser DSN).
        env: Environment the services run with (for more ``bugless`` commands).
        directory: Where logs, keys and certificates are.
        admin_group: Members get the global ``admin`` permission
            (:data:`STACK_POLICY`); ``component-creators`` get
            ``create_component``; everyone gets ``create_hotlist``.
    """

    model: ServiceAddress
    auth: ServiceAddress
    pki: StackPki
    model_database_url: str
    auth_database_url: str
    env: Mapping[str, str]
    directory: Path
    admin_group: str = "admins"
    model_process: ServiceProcess | None = None
    auth_process: ServiceProcess | None = None
    _auth_mapping_seen: str = ""
    _extra_authenticators: list[ExtraAuthenticator] = field(default_factory=list)

    def run_bugless(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``bugless ARGS...`` with the stack's environment; return its result.

        Raises:
            RuntimeError: ``check`` is true and the command failed; the
                message quotes its output.
        """
        result = subprocess.run(
            [*BUGLESS_COMMAND, *args],
            env=dict(self.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            msg = (
                f"bugless {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
            raise RuntimeError(msg)
        return result

    def add_user(
        self,
        username: str,
        password: str | None = None,
        *,
        groups: Sequence[str] = (),
        admin: bool = False,
        display_name: str = "",
        email: str = "",
    ) -> None:
        """Create a local (password) user through ``bugless auth user add``.

        ``admin=True`` adds the user to :attr:`admin_group`.
        """
        args = ["auth", "user", "add", username]
        args += ["--password", password or secrets.token_urlsafe(12)]
        if display_name:
            args += ["--display-name", display_name]
        if email:
            args += ["--email", email]
        if groups:
            args += ["--groups", ",".join(groups)]
        if admin:
            args.append("--admin")
        self.run_bugless(*args)

    def add_bot(
        self,
        username: str,
        *,
        groups: Sequence[str] = (),
        admin: bool = False,
        reload: bool = True,
    ) -> CertificateFiles:
        """Mint a client certificate for a bot user and map it in the ``tls`` backend.

        The user itself is created by the Authenticator on the certificate's
        first authentication (a certificate identity is its own user, under
        the ``tls`` namespace). The Authenticator reads its mapping at start,
        so it is restarted (a second or two) unless ``reload`` is false; add
        several bots with ``reload=False`` and call :meth:`reload_auth` once.
        """
        all_groups = [*groups, *([self.admin_group] if admin else [])]
        files = self.pki.client_certificate_for(username, groups=all_groups)
        if reload:
            self.reload_auth()
        return files

    def reload_auth(self) -> None:
        """Restart the Authenticator if the certificate mapping changed since it started."""
        mapping = self.pki.mapping_file.read_text()
        if self.auth_process is not None and mapping == self._auth_mapping_seen:
            return
        if self.auth_process is not None:
            self.auth_process.stop()
        self._auth_mapping_seen = mapping
        self.auth_process = _start_service(
            "auth",
            ["auth", "serve", "--port", str(self.auth.port), "--drain-seconds", "0"],
            self.env,
            self.directory,
        )
        self.auth_process.wait_serving(self.auth, "bugless.v1.Authenticator")

    def start_authenticator(
        self,
        name: str,
        *,
        authenticators: Sequence[str] = ("local", "tls"),
        options: Mapping[str, Mapping[str, str]] | None = None,
        policy: Mapping[str, Sequence[str]] | None = None,
    ) -> ExtraAuthenticator:
        """Start one more ``bugless auth serve`` on this stack's database and token keys.

        For tests that need an Authenticator configured unlike the session's
        (an OIDC provider, a stricter policy) without restarting, or slowing
        down, the one every other test shares. Both processes read the same
        users and sign with the same keys, so a token one issues the other
        accepts, and the Model sees the same user ids; only the sign-in
        methods and the ``policy`` (group → permissions, default
        :data:`STACK_POLICY`) differ. Backend options go on the command line
        as ``--authenticator-option NAME.KEY=VALUE``, the way an operator
        passes them. The caller stops the result (it is also stopped with the
        stack).
        """
        address = ServiceAddress("127.0.0.1", free_port())
        args = [
            "auth",
            "serve",
            "--port",
            str(address.port),
            "--drain-seconds",
            "0",
            "--authenticator",
            ",".join(authenticators),
        ]
        for backend, values in (options or {}).items():
            for key, value in values.items():
                args += ["--authenticator-option", f"{backend}.{key}={value}"]
        env = dict(self.env)
        if policy is not None:
            env["BUGLESS_AUTH_POLICY"] = json.dumps({g: list(p) for g, p in policy.items()})
        process = _start_service(f"auth-{name}-{address.port}", args, env, self.directory)
        extra = ExtraAuthenticator(address=address, service=process)
        self._extra_authenticators.append(extra)
        try:
            process.wait_serving(address, "bugless.v1.Authenticator")
        except BaseException:
            extra.stop()
            raise
        return extra

    def stop(self) -> None:
        """Stop every service this stack started."""
        for extra in self._extra_authenticators:
            extra.stop()
        for service in (self.auth_process, self.model_process):
            if service is not None:
                service.stop()
        self.auth_process = self.model_process = None


def _start_service(
    name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path
) -> ServiceProcess:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*BUGLESS_COMMAND, *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(name=name, process=process, log=log)


def start_stack(postgres_server: PostgresTestServer, directory: Path) -> BuglessStack:
    """Migrate two fresh databases and start the Model and the Authenticator.

    The caller stops the result (:meth:`BuglessStack.stop`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = StackPki.create(directory / "pki")
    model_db = postgres_server.create_database("stack_model")
    auth_db = postgres_server.create_database("stack_auth")
    token_key = directory / "token.key"
    token_key.write_text(secrets.token_urlsafe(48))
    token_key.chmod(0o600)
    model = ServiceAddress("127.0.0.1", free_port())
    auth = ServiceAddress("127.0.0.1", free_port())
    env = {
        **os.environ,
        "BUGLESS_DATABASE_URL": model_db,
        "BUGLESS_PAGE_TOKEN_SECRET": secrets.token_urlsafe(24),
        "BUGLESS_AUTH_DATABASE_URL": auth_db,
        "BUGLESS_AUTH_AUTHENTICATORS": "local,tls",
        "BUGLESS_AUTH_TOKEN_KEY_FILES": str(token_key),
        "BUGLESS_AUTH_TLS_MAPPING_FILE": str(pki.mapping_file),
        "BUGLESS_AUTH_TLS_CA_FILE": str(pki.ca_file),
        "BUGLESS_AUTH_POLICY": json.dumps(STACK_POLICY),
        # Cheap password hashing: the tests check behaviour, not hashing cost.
        "BUGLESS_AUTH_ARGON2_TIME_COST": "1",
        "BUGLESS_AUTH_ARGON2_MEMORY_KIB": "1024",
        "BUGLESS_AUTH_ARGON2_PARALLELISM": "1",
    }
    stack = BuglessStack(
        model=model,
        auth=auth,
        pki=pki,
        model_database_url=model_db,
        auth_database_url=auth_db,
        env=env,
        directory=directory,
    )
    try:
        stack.run_bugless("model", "migrate")
        stack.run_bugless("auth", "migrate")
        stack.model_process = _start_service(
            "model",
            ["model", "serve", "--port", str(model.port), "--drain-seconds", "0"],
            env,
            directory,
        )
        stack.reload_auth()
        stack.model_process.wait_serving(model, "bugless.v1.Model")
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def bugless_stack(
    postgres_server: PostgresTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuglessStack]:
    """The Model and the Authenticator for this session; stopped at its end."""
    stack = start_stack(postgres_server, tmp_path_factory.mktemp("bugless-stack"))
    try:
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.stop()


#: The label of the OIDC sign-in button of :func:`bugless_oidc_auth`.
OIDC_LABEL = "Sign in with Mock SSO"


@pytest.fixture(scope="module")
def bugless_oidc_auth(
    bugless_stack: BuglessStack, oidc_provider: OidcProvider
) -> Iterator[ExtraAuthenticator]:
    """An Authenticator with ``local,tls,oidc``, the OIDC backend trusting the mock provider.

    Module-scoped and separate from the session's Authenticator, so only the
    modules that sign in through a provider pay for starting it. Needs the
    ``oidc_provider`` fixture: list ``bugless_core.testing.oidc_provider`` in
    ``pytest_plugins`` too. Its sign-in button reads :data:`OIDC_LABEL`;
    the provider's ``groups`` claim becomes the identity's groups (so a
    user whose claim says ``admins`` is a global admin under
    :data:`STACK_POLICY`).
    """
    from bugless_core.testing.oidc_provider import CLIENT_ID, CLIENT_SECRET  # noqa: PLC0415

    extra = bugless_stack.start_authenticator(
        "oidc",
        authenticators=("local", "tls", "oidc"),
        options={
            "oidc": {
                "issuer": oidc_provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "label": OIDC_LABEL,
                "groups_claim": "groups",
                "http_timeout": "5",
            }
        },
    )
    try:
        yield extra
    finally:
        extra.stop()
