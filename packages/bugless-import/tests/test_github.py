"""GitHub Issues from `gh api --paginate` files into the real Model and Authenticator."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from import_support import FIXTURES, MakeSettings, find, history, usernames

from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter, read_pages
from bugless_proto import v1

GITHUB = FIXTURES / "github"


def _mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(
        '[labels]\nregression = "hotlist:Rocket regressions"\n'
        '"locked:too heated" = "hotlist:Locked threads"\n',
        encoding="utf-8",
    )
    return path


def test_paginated_output_is_read_page_after_page() -> None:
    numbers = [i["number"] for i in read_pages(GITHUB / "issues.json")]
    assert numbers == [1, 2, 3]


async def test_the_dry_run_reports_and_writes_nothing(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    report = await run_import(
        GitHubImporter(str(GITHUB), {}), make_settings(dry_run=True, mapping=_mapping(tmp_path))
    )
    assert report.issues == 2, "the pull request is left out"
    assert report.entries == 8, "comments, status, assignee, title and label events"
    assert report.comments == 4
    assert "Imported" in report.components_to_create or report.components_to_create == []
    assert ("labels", "bug", 1) in report.unmapped
    assert report.matched["username"] >= 1, "ann matches the bugless user ann"
    assert any(name.startswith("octocat@github") for name in report.placeholders)
    assert "would import" not in report.render() or report.dry_run
    assert await find(model, "github:acme/rocket#1") == []


async def test_issues_keep_people_times_history_and_labels(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub, tmp_path: Path
) -> None:
    settings = make_settings(mapping=_mapping(tmp_path))
    report = await run_import(GitHubImporter(str(GITHUB), {}), settings)
    assert (report.created, report.unchanged) == (2, 0)
    assert await find(model, "github:acme/rocket#2") == [], "pull requests are skipped"

    (issue,) = await find(model, "github:acme/rocket#1")
    assert issue.title == "Launch fails at T-0"
    assert issue.status is v1.Status.FIXED
    assert issue.created_at == datetime(2021, 5, 1, 9, tzinfo=UTC)
    assert issue.closed_at == datetime(2021, 5, 3, 11, tzinfo=UTC)
    assert issue.modified_at == datetime(2021, 5, 3, 12, tzinfo=UTC)
    assert "**stops**" in issue.description
    reporter, assignee = await usernames(auth, [issue.reporter, issue.assignee])
    assert reporter == "octocat@github", "no bugless account: a placeholder"
    assert assignee == "ann", "matched by username"
    assert len(issue.hotlist_ids) == 1

    entries = await history(model, issue.id)
    authors = await usernames(auth, [e.author for e in entries])
    seen = [(a, str(e.created_at), e.comment) for a, e in zip(authors, entries, strict=True)]
    assert seen == [
        ("octocat@github", "2021-05-01 09:00:00+00:00", issue.description),
        ("octocat@github", "2021-05-01 09:30:00+00:00", ""),
        ("octocat@github", "2021-05-01 09:45:00+00:00", ""),
        ("ann", "2021-05-01 10:00:00+00:00", "I see it too."),
        # octocat's `regression` label, mapped to a hotlist: the issue joins
        # it there, not at its creation.
        ("octocat@github", "2021-05-01 11:00:00+00:00", ""),
        ("ghost@github", "2021-05-02 10:00:00+00:00", "(from a deleted account)"),
        # GitHub's #2, linked to the issue imported as github:acme/rocket#2 (the
        # web would link a bare #2 to bugless issue 2), GitHub's page along.
        (
            "bob-gh@github",
            "2021-05-03 10:30:00+00:00",
            "Fixed by [#2](/imported?id=github%3Aacme%2Frocket%232"
            "&source=https%3A%2F%2Fgithub.com%2Facme%2Frocket%2Fissues%2F2).",
        ),
        ("ann", "2021-05-03 11:00:00+00:00", ""),
    ]
    assert entries[0].changes[0].new_value == "Launch fails", "created with its first title"
    assert [(c.field, c.old_value, c.new_value) for c in entries[2].changes] == [
        ("title", "Launch fails", "Launch fails at T-0")
    ]
    (regressions,) = issue.hotlist_ids
    assert [(c.field, list(c.added)) for c in entries[4].changes] == [
        ("hotlist_ids", [str(regressions)])
    ]
    assert not [c for c in entries[0].changes if c.field == "hotlist_ids"]
    assert [(c.field, c.new_value) for c in entries[7].changes] == [("status", "FIXED")]
    assert {e.imported_from for e in entries} == {"github:acme/rocket#1"}

    (locked,) = await find(model, "github:acme/rocket#3")
    (reporter,) = await usernames(auth, [locked.reporter])
    assert reporter == "ghost@github"
    assert len(locked.hotlist_ids) == 1, "the lock reason's label went to a hotlist"

    with (settings.state_dir / "github-redirects.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {(r["old_url"], r["new_url"]) for r in rows} == {
        (
            "https://github.com/acme/rocket/issues/1",
            f"https://bugless.example.org/issues/{issue.id}",
        ),
        (
            "https://github.com/acme/rocket/issues/3",
            f"https://bugless.example.org/issues/{locked.id}",
        ),
    }

    resumed = await run_import(GitHubImporter(str(GITHUB), {}), settings)
    assert (resumed.created, resumed.unchanged, resumed.done_before) == (0, 0, 2)
    again = await run_import(
        GitHubImporter(str(GITHUB), {}),
        make_settings(mapping=_mapping(tmp_path), state_dir=settings.state_dir, refresh=True),
    )
    assert (again.created, again.extended, again.unchanged) == (0, 0, 2), "idempotent"
    assert len(await history(model, issue.id)) == len(entries)


async def test_only_the_import_identity_reaches_import_issue(model: v1.ModelStub) -> None:
    """The web tier's certificate (``model`` is reached as ``web``) is refused."""
    import pytest
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    request = v1.ImportIssueRequest(
        caller=v1.Caller(user_id="root", admin=True, import_issues=True),
        external_id="github:acme/rocket#999",
        fields=v1.IssueFields(title="sneaky", component_id=1),
        reporter="x",
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(GRPCError) as refused:
        await model.import_issue(request)
    assert refused.value.status is Status.PERMISSION_DENIED


def _issue_of(repo: str, number: int, body: str) -> dict[str, object]:
    api = f"https://api.github.com/repos/{repo}"
    return {
        "url": f"{api}/issues/{number}", "repository_url": api,
        "html_url": f"https://github.com/{repo}/issues/{number}", "number": number,
        "title": f"{repo} {number}", "user": {"login": "octocat"}, "labels": [],
        "state": "open", "locked": False, "assignee": None, "body": body,
        "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z",
        "closed_at": None,
    }  # fmt: skip


async def test_a_reference_is_to_the_issue_of_its_own_repository(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """Two repositories in one issues.json (two --paginate outputs), numbers overlapping."""
    rocket = [_issue_of("acme/booster", n, f"Booster text: see #{3 - n}.") for n in (1, 2)]
    probe = [_issue_of("acme/probe", n, f"Probe text: see #{3 - n}.") for n in (1, 2)]
    pages = json.dumps(rocket) + "\n" + json.dumps(probe) + "\n"
    (tmp_path / "issues.json").write_text(pages, encoding="utf-8")
    report = await run_import(GitHubImporter(str(tmp_path), {}), make_settings())
    assert report.created == 4

    def link(repo: str, number: int) -> str:
        quoted = repo.replace("/", "%2F")
        return (
            f"[#{number}](/imported?id=github%3A{quoted}%23{number}"
            f"&source=https%3A%2F%2Fgithub.com%2F{quoted}%2Fissues%2F{number})"
        )

    for repo, word in (("acme/booster", "Booster"), ("acme/probe", "Probe")):
        for number in (1, 2):
            (issue,) = await find(model, f"github:{repo}#{number}")
            assert issue.description == f"{word} text: see {link(repo, 3 - number)}."
