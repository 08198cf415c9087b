"""A Redmine issue's attachments come into bugless as its files, as a Trac ticket's do.

The files are listed by REST ``include=attachments`` and read from their
``content_url`` with the API key, served by the loopback Redmine of
``redmine_server``, and copied through a real Model with a small per-file
limit: once, at their time, by their uploader, a file over the limit
reported and remembered as refused. The key goes only to Redmine: not to a
``content_url`` on another host, nor on to where a download redirects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from import_support import (
    ADMIN,
    SAMPLE_LOG,
    SAMPLE_PNG,
    SMALL_FILE_LIMIT,
    MakeSettings,
    attachment_content,
    find,
    history,
    not_imported_files,
    read_source_file,
    redmine_tree,
    usernames,
)
from redmine_server import Redmine, serve

from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter, when
from bugless_proto import v1


class _Redmine43(RedmineImporter):
    """Redmine under a name of its own (test_redmine owns ``redmine``)."""

    name = "redmine43"


REDMINE_KEY = "fedcba9876543210fedcba9876543210fedcba98"


def _redmine_files(tree: Path, number: int) -> None:
    """Issue ``number`` of ``tree`` gets three files: ann's log, rex's image, ann's too-large dump.

    Between the second journal (04-02 09:00) and the last (04-05 09:00).
    """
    path = tree / "issues" / f"{number}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    files = [
        (71, "ground log.txt", SAMPLE_LOG, "text/plain", 5, "Ann R", "2019-04-02T10:00:00Z"),
        (72, "antenna.png", SAMPLE_PNG, "image/png", 6, "Rex Redmine", "2019-04-03T10:00:00Z"),
        (73, "core.dump", b"\0" * (SMALL_FILE_LIMIT + 1), "", 5, "Ann R", "2019-04-04T10:00:00Z"),
    ]
    data["issue"]["attachments"] = [
        {
            "id": file_id,
            "filename": name,
            "filesize": len(content),
            "content_type": kind,
            "description": f"the {name}",
            "author": {"id": author, "name": author_name},
            "created_on": at,
        }
        for file_id, name, content, kind, author, author_name, at in files
    ]
    path.write_text(json.dumps(data), encoding="utf-8")
    for file_id, name, content, *_ in files:
        (tree / "attachments" / str(file_id)).mkdir(parents=True)
        (tree / "attachments" / str(file_id) / name).write_bytes(content)


async def test_redmine_attachments_are_copied_from_their_content_url_once(
    small_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    bugless_stack: LocalStack,
    tmp_path: Path,
) -> None:
    tree = redmine_tree(tmp_path, 8312)
    _redmine_files(tree, 8312)
    key_file = tmp_path / "redmine-key"
    key_file.write_text(REDMINE_KEY, encoding="utf-8")
    options = {"api-key-file": str(key_file)}
    with serve(Redmine(tree, REDMINE_KEY)) as server:
        dry = await run_import(_Redmine43(server.url, options), small_settings(dry_run=True))
        total = len(SAMPLE_LOG) + len(SAMPLE_PNG) + SMALL_FILE_LIMIT + 1
        assert (dry.attachments, dry.attachment_issues, dry.attachment_bytes) == (3, 1, total)
        assert not any("/attachments/" in r for r in server.requests), "a dry run reads no bytes"

        settings = small_settings()
        report = await run_import(_Redmine43(server.url, options), settings)
        assert report.created == 3
        assert (report.files_sent, report.bytes_sent) == (2, len(SAMPLE_LOG) + len(SAMPLE_PNG)), (
            report.render()
        )
        ((external_id, name, why),) = report.files_skipped
        assert (external_id, name) == ("redmine43:8312", "core.dump")
        assert "limit" in why
        assert "redmine43:8312: 'core.dump' not copied" in report.render()
        downloads = [r for r in server.requests if r.startswith("/attachments/download/")]
        assert sorted(downloads) == [
            "/attachments/download/71/ground%20log.txt",
            "/attachments/download/72/antenna.png",
            "/attachments/download/73/core.dump",
        ], "each file read once, from its content_url (the key checked there too)"

        (issue,) = await find(model, "redmine43:8312")
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        files = list(listed.attachments)
        assert [(f.name, f.size, f.created_at) for f in files] == [
            ("ground log.txt", len(SAMPLE_LOG), when("2019-04-02T10:00:00Z")),
            ("antenna.png", len(SAMPLE_PNG), when("2019-04-03T10:00:00Z")),
        ]
        assert await usernames(auth, [f.uploader for f in files]) == ["ann", "rex@redmine43"]
        assert (await attachment_content(bugless_stack, files[0].id))[1] == SAMPLE_LOG
        got, content = await attachment_content(bugless_stack, files[1].id)
        assert (content, got.content_type) == (SAMPLE_PNG, "image/png")

        entries = await history(model, issue.id)
        shown = [(e.comment, [a.name for a in e.attachments]) for e in entries[1:]]
        assert [a.description for e in entries for a in e.attachments] == [
            "the ground log.txt",
            "the antenna.png",
        ]
        assert shown[2:4] == [
            ("", ["ground log.txt"]),
            ("", ["antenna.png"]),
        ]
        assert shown[4] == ("", [])
        assert not_imported_files(entries[5]) == [f"core.dump ({why}): the core.dump"]
        assert shown[5] == ("Fixed the buffer.", [])
        assert await find(model, "redmine43:8313") != []

        # Again, and a refresh: no file is attached twice.
        again = await run_import(_Redmine43(server.url, options), settings)
        assert (again.done_before, again.files_sent, again.entries_written) == (3, 0, 0)
        server.requests.clear()
        refreshed = await run_import(_Redmine43(server.url, options), small_settings(refresh=True))
        assert (refreshed.unchanged, refreshed.entries_written) == (3, 0)
        assert (refreshed.files_sent, refreshed.bytes_sent) == (0, 0), "the Model holds them"
        downloads = [r for r in server.requests if r.startswith("/attachments/download/")]
        assert downloads == [], "nor is the file it refused read again (it was, before)"
        ((_, name, why),) = refreshed.files_skipped
        assert name == "core.dump"
        assert why.endswith("(refused before: not read again without --retry-refused)"), why
        assert (
            "  files the Model refused before, not read again: 1 (--retry-refused reads them)\n"
        ) in refreshed.render()
        retried = await run_import(
            _Redmine43(server.url, options), small_settings(refresh=True, retry_refused=True)
        )
        downloads = [r for r in server.requests if r.startswith("/attachments/download/")]
        assert downloads == ["/attachments/download/73/core.dump"], "--retry-refused reads it"
        assert (retried.files_sent, retried.files_refused_before) == (0, 0)
        ((_, name, why),) = retried.files_skipped
        assert (name, "limit" in why) == ("core.dump", True), "and the Model refuses it again"
        # Refused again by every --retry-refused run, it stays one line of
        # the state file, which does not grow by a line a run.
        await run_import(
            _Redmine43(server.url, options), small_settings(refresh=True, retry_refused=True)
        )
        noted = (settings.state_dir / "redmine43-refused.jsonl").read_text().splitlines()
        assert [json.loads(line)["name"] for line in noted] == ["core.dump"]
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert [f.id for f in listed.attachments] == [f.id for f in files]


def test_a_redmine_content_url_on_another_host_is_read_at_location_with_the_key(
    tmp_path: Path,
) -> None:
    """Redmine's "Host name" left at ``localhost:3000``: the key is not sent there."""
    tree = redmine_tree(tmp_path, 8412)
    _redmine_files(tree, 8412)
    key_file = tmp_path / "redmine-key"
    key_file.write_text(REDMINE_KEY, encoding="utf-8")
    with serve(Redmine(tree, REDMINE_KEY, host="http://localhost:3000/")) as server:
        importer = _Redmine43(server.url, {"api-key-file": str(key_file)})
        issue = next(iter(importer.issues()))
        assert [read_source_file(a) for a in issue.attachments[:2]] == [SAMPLE_LOG, SAMPLE_PNG]
    assert "/attachments/download/71/ground%20log.txt" in server.requests
    files = RedmineImporter(str(tree), {})
    exported = next(iter(files.issues()))
    assert exported.attachments == issue.attachments
    assert read_source_file(exported.attachments[1]) == SAMPLE_PNG, (
        "from the export's attachments/72/antenna.png"
    )
    (tree / "attachments" / "72" / "antenna.png").unlink()
    with pytest.raises(OSError, match=r"antenna\.png"):
        exported.attachments[1].open()


@contextmanager
def _file_store(body: bytes) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Another loopback origin answering ``body`` to any GET; it records the headers it gets."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not a web server's log."""

        def do_GET(self) -> None:
            received.append(dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_redmine_key_is_not_sent_on_to_where_a_download_redirects(tmp_path: Path) -> None:
    """A Redmine redirecting a download to a file store on another origin keeps its key."""
    tree = redmine_tree(tmp_path, 8413)
    _redmine_files(tree, 8413)
    key_file = tmp_path / "redmine-key"
    key_file.write_text(REDMINE_KEY, encoding="utf-8")
    with _file_store(SAMPLE_LOG) as (store, received), serve(Redmine(tree, REDMINE_KEY)) as server:
        server.redirects["/attachments/download/71/ground%20log.txt"] = f"{store}/blob/71"
        importer = _Redmine43(server.url, {"api-key-file": str(key_file)})
        issue = next(iter(importer.issues()))
        assert read_source_file(issue.attachments[0]) == SAMPLE_LOG
    assert server.requests[-1] == "/attachments/download/71/ground%20log.txt", "with the key"
    assert len(received) == 1
    assert not [h for h in received[0] if h.casefold() == "x-redmine-api-key"], received[0]
