"""A merged placeholder's imported issues are found by its new owner's name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from import_support import ADMIN, PASSWORD, MakeSettings, find, history

from bugless_core.clients import call, resolve_query
from bugless_core.search import parse_query
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter
from bugless_proto import v1

REPO = "https://api.github.com/repos/acme/merge21"


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 2100, "type": "User", "url": f"https://x/{login}"}


def _export(root: Path) -> Path:
    """One issue reported, owned and commented on by a GitHub user nobody here is."""
    root.mkdir()
    issue = {
        "url": f"{REPO}/issues/1",
        "repository_url": REPO,
        "html_url": "https://github.com/acme/merge21/issues/1",
        "number": 1,
        "title": "Written by someone who joined later",
        "user": _user("wanderer21"),
        "labels": [],
        "state": "open",
        "assignee": _user("wanderer21"),
        "created_at": "2022-03-01T09:00:00Z",
        "updated_at": "2022-03-02T09:00:00Z",
        "closed_at": None,
        "body": "First words.",
    }
    comment = {
        "url": f"{REPO}/issues/comments/1",
        "issue_url": f"{REPO}/issues/1",
        "user": _user("wanderer21"),
        "created_at": "2022-03-02T09:00:00Z",
        "body": "Still broken.",
    }
    (root / "issues.json").write_text(json.dumps([issue]), encoding="utf-8")
    (root / "comments.json").write_text(json.dumps([comment]), encoding="utf-8")
    return root


async def _search(model: v1.ModelStub, auth: v1.AuthenticatorStub, text: str) -> list[int]:
    """Issue ids for ``text``, resolved as the web and the API resolve a search."""
    structured = await resolve_query(parse_query(text), auth, me=None)
    answer = await call(model.search_issues, v1.SearchIssuesRequest(caller=ADMIN, query=structured))
    return [i.id for i in answer.issues]


async def test_user_terms_find_the_issues_of_placeholders_merged_into_a_user(
    bugless_stack: LocalStack,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    tmp_path: Path,
) -> None:
    report = await run_import(GitHubImporter(str(_export(tmp_path / "gh")), {}), make_settings())
    assert report.created == 1
    (issue,) = await find(model, "github:acme/merge21#1")
    placeholder_id = issue.reporter
    (placeholder,) = (
        await call(auth.get_users, v1.GetUsersRequest(user_ids=[placeholder_id]))
    ).users
    assert placeholder.placeholder

    bugless_stack.add_user("joined21", PASSWORD, display_name="Joined Later")
    bugless_stack.add_user("useradmin21", PASSWORD, groups=["admins"])
    for term in ("reporter", "assignee", "commenter"):
        assert await _search(model, auth, f"{term}:joined21") == []
    signed_in = await call(
        auth.authenticate_password,
        v1.AuthenticatePasswordRequest(username="useradmin21", password=PASSWORD),
    )
    await call(
        auth.merge_placeholder,
        v1.MergePlaceholderRequest(
            token=signed_in.token, placeholder=placeholder.username, into="joined21"
        ),
    )

    (real,) = (await call(auth.lookup_users, v1.LookupUsersRequest(usernames=["joined21"]))).users
    assert list(real.merged_user_ids) == [placeholder_id]
    for term in ("reporter", "assignee", "commenter"):
        assert await _search(model, auth, f"{term}:joined21") == [issue.id], term
    assert await _search(model, auth, "reporter:joined21,importer") == [issue.id]
    assert await _search(model, auth, '-reporter:joined21 externalid:"github:acme/merge21#1"') == []
    # Nothing was rewritten: the issue and its history keep the placeholder's id.
    (again,) = await find(model, "github:acme/merge21#1")
    assert again.reporter == placeholder_id != real.user_id
    assert {e.author for e in await history(model, issue.id)} == {placeholder_id}
