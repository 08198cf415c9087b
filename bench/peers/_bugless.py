"""bugless itself: Model, Authenticator and web frontend as ``bugless`` subprocesses.

Served as a deployment runs it (and as ``bugless_core.testing.stack`` starts
it): ``bugless model serve`` (PostgreSQL backend, its default pool of 10
connections) on the seeded database of the shared cluster, ``bugless auth
serve`` with the ``local`` password backend (production Argon2 settings),
and ``bugless web serve`` (uvicorn, one process, no ``--dev``) in front of
both. Pages are read signed in as ``user0042`` (group ``eng``, the data set's
benchmark caller), with the session cookie a browser would send. Creates go
to the Model's gRPC ``CreateIssue`` with that caller (the path the web form
and the API frontend both end in).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlencode

import httpx

from bench.peers._bugless_seed import SCHEMA, add_long_comments, seed_bugless
from bench.peers._peer import CreateCall, Peer, ReadTargets, run, server_process, spawned
from bugless_core.clients import ServiceAddress
from bugless_proto import v1

BUGLESS = (sys.executable, "-c", "from bugless_core.cli import main; main()")
MODEL_PORT = 58011
AUTH_PORT = 58012
WEB_PORT = 58013
METRICS_PORT = 58014
USER = "user0042"
GROUPS = ("eng",)
PASSWORD = "bench-password-0123"


def _grpc_ready(address: ServiceAddress, service: str) -> bool:
    from grpclib.health.v1.health_grpc import HealthStub  # noqa: PLC0415
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse  # noqa: PLC0415

    async def check() -> bool:
        channel = address.channel()
        try:
            reply = await HealthStub(channel).Check(
                HealthCheckRequest(service=service), timeout=2.0
            )
        except Exception:
            return False
        finally:
            channel.close()
        return bool(reply.status == HealthCheckResponse.SERVING)

    return asyncio.run(check())


class BuglessPeer(Peer):
    """bugless on the shared cluster."""

    name = "bugless"
    serving = "uvicorn (bugless web serve, 1 process) -> Model + Authenticator (gRPC)"

    @property
    def database_url(self) -> str:
        return self.context.cluster.url(self.database)

    def install(self) -> None:
        """bugless runs from this checkout's environment: nothing to install."""

    def load(self) -> None:
        """The data set was seeded before export; add the long issue's comments."""
        asyncio.run(
            add_long_comments(self.database_url, self.context.meta, self.context.dataset_dir)
        )

    @staticmethod
    def seed(cluster_url: str, issues: int, seed: int) -> tuple[list[str], dict[str, int]]:
        """Seed a fresh database (see :mod:`bench.peers._bugless_seed`)."""
        return asyncio.run(seed_bugless(cluster_url, issues, seed))

    def reset_creates(self) -> None:
        n = self.context.meta.issues
        self.context.cluster.psql(
            f'SET search_path = "{SCHEMA}";'
            f"DELETE FROM issue_history WHERE issue_id > {n};"
            f"DELETE FROM issues WHERE id > {n};",
            database=self.database,
        )

    def _env(self) -> dict[str, str]:
        key = self.home / "token.key"
        if not key.exists():
            key.write_text(secrets.token_urlsafe(48))
            key.chmod(0o600)
        return {
            "BUGLESS_AUTH_DATABASE_URL": self.context.cluster.url("bugless_auth"),
            "BUGLESS_AUTH_AUTHENTICATORS": "local",
            "BUGLESS_AUTH_TOKEN_KEY_FILES": str(key),
            "BUGLESS_AUTH_POLICY": json.dumps({"*": ["create_hotlist"]}),
        }

    def _prepare_auth(self) -> None:
        cluster = self.context.cluster
        if cluster.has_database("bugless_auth"):
            return
        cluster.recreate_database("bugless_auth")
        log = self.home / "setup.log"
        run([*BUGLESS, "auth", "migrate"], log=log, env=self._env())
        run(
            [
                *BUGLESS,
                "auth",
                "user",
                "add",
                USER,
                "--password",
                PASSWORD,
                "--groups",
                ",".join(GROUPS),
            ],
            log=log,
            env=self._env(),
        )

    @contextmanager
    def _grpc_service(self, name: str, args: list[str], port: int, service: str) -> Iterator[None]:
        address = ServiceAddress("127.0.0.1", port)
        log = self.home / f"{name}.log"
        with spawned([*BUGLESS, *args], log=log, env=self._env()) as process:
            deadline = time.monotonic() + 60.0
            while not _grpc_ready(address, service):
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"bugless {name} is not serving on {port}:\n" + log.read_text()[-3000:]
                    raise RuntimeError(msg)
                time.sleep(0.25)
            yield

    @contextmanager
    def serve(self) -> Iterator[str]:
        self._prepare_auth()
        secret = "bench-page-token-secret-0123456789"
        base = f"http://127.0.0.1:{WEB_PORT}/"
        with ExitStack() as stack:
            stack.enter_context(
                self._grpc_service(
                    "model",
                    [
                        "model",
                        "serve",
                        "--database-url",
                        self.database_url,
                        "--schema",
                        SCHEMA,
                        "--migrate",
                        "--page-token-secret",
                        secret,
                        "--port",
                        str(MODEL_PORT),
                        "--drain-seconds",
                        "0",
                        "--log-level",
                        "warning",
                    ],
                    MODEL_PORT,
                    "bugless.v1.Model",
                )
            )
            stack.enter_context(
                self._grpc_service(
                    "auth",
                    [
                        "auth",
                        "serve",
                        "--port",
                        str(AUTH_PORT),
                        "--drain-seconds",
                        "0",
                        "--log-level",
                        "warning",
                    ],
                    AUTH_PORT,
                    "bugless.v1.Authenticator",
                )
            )
            stack.enter_context(
                server_process(
                    [
                        *BUGLESS,
                        "web",
                        "serve",
                        "--model",
                        f"127.0.0.1:{MODEL_PORT}",
                        "--auth",
                        f"127.0.0.1:{AUTH_PORT}",
                        "--session-key",
                        secrets.token_urlsafe(24),
                        "--port",
                        str(WEB_PORT),
                        "--drain-seconds",
                        "0",
                        "--log-level",
                        "warning",
                    ],
                    log=self.home / "web.log",
                    ready_url=f"{base}signin",
                    env=self._env(),
                )
            )
            yield base

    def _session_cookie(self, base_url: str) -> str:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            form = client.get("signin")
            cookie = _cookie_pair(form.headers.get_list("set-cookie"))
            token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
            if token is None:
                msg = "no CSRF token on the sign-in page"
                raise RuntimeError(msg)
            signed_in = client.post(
                "signin",
                data={"username": USER, "password": PASSWORD, "_csrf": token.group(1)},
                headers={"Cookie": cookie},
            )
            if signed_in.status_code not in (302, 303):
                msg = f"bugless sign-in: {signed_in.status_code} {signed_in.text[:300]}"
                raise RuntimeError(msg)
            return _cookie_pair(signed_in.headers.get_list("set-cookie")) or cookie

    def read_targets(self, base_url: str) -> ReadTargets:
        meta = self.context.meta
        component = meta.component_ids[meta.list_component]
        listing = urlencode({"q": f"is:open componentid:{component} sort:priority"})
        search = urlencode({"q": meta.search_word})
        return ReadTargets(
            list_url=f"{base_url}search?{listing}",
            search_url=f"{base_url}search?{search}",
            issue_url=f"{base_url}issues/{meta.long_issue}",
            headers={"Cookie": self._session_cookie(base_url)},
        )

    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        meta = self.context.meta
        channel = ServiceAddress("127.0.0.1", MODEL_PORT).channel()
        stub = v1.ModelStub(channel)
        caller = v1.Caller(user_id=USER, groups=list(GROUPS))
        component = meta.component_ids[meta.list_component]

        async def create(n: int) -> None:
            await stub.create_issue(
                v1.CreateIssueRequest(
                    caller=caller,
                    fields=v1.IssueFields(
                        title=f"Bench create {n}: {meta.search_word} regression",
                        priority=v1.Priority.P2,
                        severity=v1.Severity.S2,
                        type=v1.IssueType.BUG,
                        component_id=component,
                    ),
                    description=f"Steps to reproduce {n}: run the {meta.search_word} job.",
                ),
                timeout=60.0,
            )

        async def close() -> None:
            channel.close()

        return create, close


def _cookie_pair(set_cookies: list[str]) -> str:
    """``name=value`` of the session cookie among Set-Cookie headers ("" if none)."""
    for header in set_cookies:
        pair = header.split(";", 1)[0]
        if "bugless" in pair.split("=", 1)[0]:
            return pair
    return ""
