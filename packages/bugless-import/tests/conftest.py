"""Fixtures: the real Model and Authenticator, an import identity, run settings, the web app.

What test modules import is in ``import_support``, not here (see that module).
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from import_support import PASSWORD, SMALL_FILE_LIMIT, MakeSettings
from litestar import Litestar
from litestar.testing import AsyncTestClient
from trac_web_support import BASE

from bugless_core.clients import ServiceAddress, call
from bugless_dev.processes import ServiceFailed, spawn
from bugless_dev.stack import LocalStack, RunningService
from bugless_import import ImportSettings
from bugless_proto import v1
from bugless_web import WebSettings, create_app

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]

#: ``bugless model serve`` as a release before ImportedEntry.files_not_imported
#: and relations_not_imported.
EARLIER_MODEL = Path(__file__).with_name("model_before_files_not_imported.py")
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture(scope="session")
async def import_token(bugless_stack: LocalStack) -> str:
    """A session token of ``importer`` (group importers: admin + import_issues)."""
    bugless_stack.add_user("importer", PASSWORD, groups=["importers"], email="importer@example.com")
    bugless_stack.add_user("ann", PASSWORD, email="ann@example.com", display_name="Ann Real")
    try:
        bugless_stack.add_user("bob", PASSWORD, display_name="Bob Real")
    except ServiceFailed as exc:
        # The web tests' world has a bob when they ran first in this pytest
        # (one session stack for every package's tests): the imports match
        # bob by username only, so theirs serves.
        if "'bob' is taken" not in str(exc):
            raise
    channel = bugless_stack.auth.channel()
    try:
        auth = v1.AuthenticatorStub(channel)
        result = await call(
            auth.authenticate_password,
            v1.AuthenticatePasswordRequest(username="importer", password=PASSWORD),
        )
    finally:
        channel.close()
    return result.token


@pytest.fixture
def make_settings(bugless_stack: LocalStack, import_token: str, tmp_path: Path) -> MakeSettings:
    """ImportSettings for the session's services (keyword overrides)."""

    files = bugless_stack.pki.service_certificate("import")

    def make(**overrides: Any) -> ImportSettings:
        model: ServiceAddress = bugless_stack.model
        auth: ServiceAddress = bugless_stack.auth
        values: dict[str, Any] = {
            "model": ServiceAddress(model.host, model.port),
            "auth": ServiceAddress(auth.host, auth.port),
            "tls_ca": bugless_stack.pki.ca_file,
            "tls_cert": files.cert,
            "tls_key": files.key,
            "token": import_token,
            "state_dir": tmp_path / "state",
            "new_url": "https://bugless.example.org",
            "quiet": True,
        }
        values.update(overrides)
        return ImportSettings(**values)

    return make


@pytest.fixture
async def model(bugless_stack: LocalStack) -> Any:
    """A Model stub on the session's Model."""
    channel = bugless_stack.model.channel()
    # Each call carries an assertion of the (made-up) caller its request names.
    yield bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
    channel.close()


@pytest.fixture
async def auth(bugless_stack: LocalStack) -> Any:
    """An Authenticator stub."""
    channel = bugless_stack.auth.channel()
    yield v1.AuthenticatorStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def small_model(bugless_stack: LocalStack) -> Iterator[RunningService]:
    """A second Model replica of the session's stack with a 4 KiB per-file limit."""
    service = bugless_stack.start(
        "model",
        ["model", "serve", "--port", "0"],
        name="model-small-files",
        env={"BUGLESS_ATTACHMENT_MAX_FILE_BYTES": str(SMALL_FILE_LIMIT)},
    )
    try:
        yield service
    finally:
        bugless_stack.stop_service(service)


@pytest.fixture(scope="module")
def earlier_model(
    bugless_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """A Model of the release before files_not_imported, with the small per-file limit.

    Its servicer drops ``ImportedEntry.files_not_imported`` and
    ``relations_not_imported`` unread, as the earlier release's decoder does.
    """
    logs = tmp_path_factory.mktemp("earlier-model")
    ready = logs / "ready.json"
    process = spawn(
        "model-before-files-not-imported",
        [
            sys.executable,
            str(EARLIER_MODEL),
            "model",
            "serve",
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        {**bugless_stack.env, "BUGLESS_ATTACHMENT_MAX_FILE_BYTES": str(SMALL_FILE_LIMIT)},
        logs / "model.log",
        ready_file=ready,
    )
    service = bugless_stack.wait_started("model", process)
    try:
        yield service
    finally:
        bugless_stack.stop_service(service)


@pytest.fixture
def small_settings(make_settings: MakeSettings, small_model: RunningService) -> MakeSettings:
    """Run settings for the Model with the small per-file limit."""
    address = small_model.address
    assert address is not None

    def make(**overrides: Any) -> ImportSettings:
        return make_settings(model=ServiceAddress(address.host, address.port), **overrides)

    return make


@pytest.fixture
async def web(bugless_stack: LocalStack) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The real web app on the session's Model and Authenticator, signed in as ann."""
    settings = WebSettings(
        model=bugless_stack.model,
        auth=bugless_stack.auth,
        session_keys=("import-test-session-key-" + "x" * 24,),
        dev=True,
        imported_sources=(BASE,),  # this deployment imported from that Trac
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as client:
        page = await client.get("/signin")
        match = _CSRF.search(page.text)
        assert match, "the sign-in page carries no CSRF token"
        signed_in = await client.post(
            "/signin",
            data={"username": "ann", "password": PASSWORD, "_csrf": match.group(1), "next": "/"},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        yield client
