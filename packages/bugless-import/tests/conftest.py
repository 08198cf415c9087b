"""Fixtures: the real Model and Authenticator, an import identity, run settings."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bugless_core.clients import ServiceAddress, call
from bugless_dev.stack import LocalStack
from bugless_import import ImportSettings
from bugless_proto import v1

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "import-test-password"

MakeSettings = Callable[..., ImportSettings]


@pytest.fixture(scope="session")
async def import_token(bugless_stack: LocalStack) -> str:
    """A session token of ``importer`` (group importers: admin + import_issues)."""
    bugless_stack.add_user("importer", PASSWORD, groups=["importers"], email="importer@example.com")
    bugless_stack.add_user("ann", PASSWORD, email="ann@example.com", display_name="Ann Real")
    bugless_stack.add_user("bob", PASSWORD, display_name="Bob Real")
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


ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def find(model: v1.ModelStub, external_id: str) -> list[v1.Issue]:
    """The issues with this external reference (at most one, if all is well)."""
    answer = await call(
        model.search_issues,
        v1.SearchIssuesRequest(
            caller=ADMIN,
            query=v1.StructuredQuery(
                filter=v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.EXTERNAL_ID,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(text=external_id)],
                    )
                )
            ),
        ),
    )
    return list(answer.issues)


async def history(model: v1.ModelStub, issue_id: int) -> list[v1.HistoryEntry]:
    """Every entry of an issue."""
    answer = await call(
        model.list_history,
        v1.ListHistoryRequest(caller=ADMIN, issue_id=issue_id, page=v1.PageRequest(page_size=500)),
    )
    return list(answer.entries)


async def usernames(auth: v1.AuthenticatorStub, user_ids: list[str]) -> list[str]:
    """The usernames of user ids, in order."""
    answer = await call(auth.get_users, v1.GetUsersRequest(user_ids=sorted(set(user_ids))))
    names = {u.user_id: u.username for u in answer.users}
    return [names.get(i, f"?{i}") for i in user_ids]


def redmine_tree(directory: Path, first: int) -> Path:
    """The Redmine fixtures with issue 12 as three issues: ``first`` (closed), +1 (open), +2.

    Three issues, so that a Redmine that pages two at a time has a second
    page; numbered from ``first`` so that each test file imports its own
    issues into the session's Model (``redmine:12`` is test_redmine's).
    """
    root = directory / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    twelve = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))
    (root / "issues" / "12.json").unlink()
    subjects = (twelve["issue"]["subject"], "Ground station reboots", "Antenna drifts")
    for number, subject in enumerate(subjects, start=first):
        issue = json.loads(json.dumps(twelve))
        issue["issue"].update(id=number, subject=subject)
        for journal in issue["issue"]["journals"]:
            journal["id"] += number * 100
        if number == first + 1:
            issue["issue"].update(status={"id": 2, "name": "In Progress"}, closed_on=None)
            issue["issue"]["journals"] = issue["issue"]["journals"][:2]
        (root / "issues" / f"{number}.json").write_text(json.dumps(issue), encoding="utf-8")
    return root
