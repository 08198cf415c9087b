"""Files pasted into GitHub text are copied with what links them; the links point at the copies.

GitHub has no attachments API: a pasted file is a link in the Markdown. A
loopback GitHub host (``github_server``: a private repository's
``user-attachments`` with a token and a redirect to its storage, an older
``OWNER/REPO/files/`` link) stands in for github.com (a GitHub Enterprise
Server is just such a host); the real Model stores the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from github_server import GitHubHost, serve
from import_support import ADMIN, FIXTURES, TOKEN, MakeSettings, find, history, usernames

from bugless_core.importer import SourceIssue
from bugless_core.issue_references import imported_file_link
from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter, linked_file_pattern, read_pages
from bugless_proto import v1

ASSET = "5e1a0c2e-3b1f-4f4e-9d55-0a8c2f0b7d11"
SHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(120))
LOG = b"T-3 hold\nT-0 stall\n" * 10


class _GitHub71(GitHubImporter):
    """GitHub under a name of its own (test_github imports the fixtures as ``github``)."""

    name = "github71"


def _tree(tmp_path: Path, origin: str) -> Path:
    """The GitHub fixtures on ``origin``, issue 1 and its first comment linking files."""
    tree = tmp_path / "github"
    shutil.copytree(FIXTURES / "github", tree)
    issues = read_pages(tree / "issues.json")
    for issue in issues:
        issue["html_url"] = issue["html_url"].replace("https://github.com/", origin)
    shot = f"{origin}user-attachments/assets/{ASSET}"
    log = f"{origin}acme/rocket/files/9001/launch.log"
    issues[0]["body"] += f"\n\n![image]({shot})"
    (tree / "issues.json").write_text(json.dumps(issues), encoding="utf-8")
    comments = read_pages(tree / "comments.json")
    comments[0]["body"] += f" Log: [launch.log]({log}), and again ![image]({shot})"
    (tree / "comments.json").write_text(json.dumps(comments), encoding="utf-8")
    return tree


def test_the_links_github_writes_for_pasted_files_are_found() -> None:
    text = (
        "![image](https://github.com/user-attachments/assets/0f3c-11) "
        '<img src="https://user-images.githubusercontent.com/1/abc.png" width=300> '
        "[log.zip](https://github.com/acme/rocket/files/123/log.zip) "
        "https://github.com/acme/rocket/issues/2 https://github.com/acme/rocket/assets/9/x-y "
        "https://evil.example/user-attachments/assets/1"
    )
    found = [
        (m.group("label"), m.group("url"))
        for m in linked_file_pattern("https://github.com").finditer(text)
    ]
    assert found == [
        ("image", "https://github.com/user-attachments/assets/0f3c-11"),
        (None, "https://user-images.githubusercontent.com/1/abc.png"),
        ("log.zip", "https://github.com/acme/rocket/files/123/log.zip"),
        (None, "https://github.com/acme/rocket/assets/9/x-y"),
    ], "an issue's page is no file; another host's path is not GitHub's"


async def test_pasted_files_are_copied_onto_what_links_them_and_the_links_follow(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub, tmp_path: Path
) -> None:
    token_file = tmp_path / "github-token"
    token_file.write_text(TOKEN, encoding="utf-8")
    options = {"token-file": str(token_file)}
    host = GitHubHost(
        TOKEN, files={f"/storage/{ASSET}": SHOT, "/acme/rocket/files/9001/launch.log": LOG}
    )
    with serve(host) as server:
        tree = _tree(tmp_path, server.url)
        shot = f"{server.url}user-attachments/assets/{ASSET}"
        log = f"{server.url}acme/rocket/files/9001/launch.log"

        dry = await run_import(_GitHub71(str(tree), options), make_settings(dry_run=True))
        assert (dry.attachments, dry.attachment_issues) == (3, 1)
        assert server.requests == [], "a dry run reads no file"

        report = await run_import(_GitHub71(str(tree), options), make_settings())
        assert report.created == 2
        assert (report.files_sent, report.files_skipped) == (3, [])
        picture = [
            (f"/user-attachments/assets/{ASSET}", f"Bearer {TOKEN}"),
            (f"/storage/{ASSET}", ""),  # the token is not sent on where it redirects
        ]
        assert sorted(server.requests) == sorted(
            [*picture, *picture, ("/acme/rocket/files/9001/launch.log", f"Bearer {TOKEN}")]
        ), "the picture is read for the description and for the comment"

        external_id = "github71:acme/rocket#1"
        (issue,) = await find(model, external_id)
        shot_sha = hashlib.sha256(SHOT).hexdigest()
        log_sha = hashlib.sha256(LOG).hexdigest()
        assert f"![image]({imported_file_link(external_id, shot_sha, shot)})" in issue.description
        assert shot not in issue.description.replace(quote(shot, safe=""), "")

        entries = await history(model, issue.id)
        authors = await usernames(auth, [e.author for e in entries])
        files = [
            (a, [(f.name, f.sha256) for f in e.attachments])
            for a, e in zip(authors, entries, strict=True)
        ]
        assert files[1] == ("octocat@github71", [(ASSET, shot_sha)]), (
            "the description's, at creation"
        )
        (commented,) = [e for e in entries if e.comment.startswith("I see it too.")]
        assert [(f.name, f.sha256) for f in commented.attachments] == [
            ("launch.log", log_sha),
            (ASSET, shot_sha),
        ], "on the comment's own entry"
        assert f"[launch.log]({imported_file_link(external_id, log_sha, log)})" in commented.comment
        assert len(entries) == 8, (
            "the 7 entries of test_github's import, and the description's file"
        )

        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert sorted(f.name for f in listed.attachments) == sorted([ASSET, "launch.log", ASSET])

        server.requests.clear()
        refreshed = await run_import(_GitHub71(str(tree), options), make_settings(refresh=True))
        assert (refreshed.unchanged, refreshed.entries_written, refreshed.files_sent) == (2, 0, 0)
        assert server.requests == [], "a refresh reads no file the Model holds"


class _GitHub72(GitHubImporter):
    name = "github72"


class _GitHub72Before(_GitHub72):
    """The importer of a release that copied no linked files (nor recorded that it did not)."""

    def issues(self) -> Iterator[SourceIssue]:
        for issue in super().issues():
            yield dataclasses.replace(
                issue,
                attachments=(),
                entries=tuple(dataclasses.replace(e, attachments=()) for e in issue.entries),
            )


async def test_a_refresh_of_an_issue_imported_before_linked_files_were_copied_keeps_its_history(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """Its history position counts no entry for the description's file: adding one would repeat."""
    host = GitHubHost(TOKEN, files={"/acme/rocket/files/9001/launch.log": LOG})
    with serve(host) as server:
        tree = _tree(tmp_path, server.url)
        settings = make_settings()
        assert (await run_import(_GitHub72Before(str(tree), {}), settings)).created == 2
        done = settings.state_dir / "github72-done.jsonl"
        records = [json.loads(line) for line in done.read_text(encoding="utf-8").splitlines()]
        assert {r.pop("linked") for r in records} == {True}  # what that release wrote: none
        done.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        (issue,) = await find(model, "github72:acme/rocket#1")
        before = await history(model, issue.id)

        refreshed = await run_import(_GitHub72(str(tree), {}), make_settings(refresh=True))
        assert (refreshed.unchanged, refreshed.entries_written, refreshed.files_sent) == (2, 0, 0)
        assert {why for *_, why in refreshed.files_skipped} == {
            "the issue was imported before linked files were copied"
        }
        assert len(refreshed.files_skipped) == 3
        assert await history(model, issue.id) == before
        assert server.requests == []
