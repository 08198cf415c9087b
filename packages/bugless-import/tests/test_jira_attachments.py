"""A Jira issue's attachments come into bugless streamed, a few at a time, in their order.

Jira's search JSON lists an issue's files (``fields.attachment``) with a
``content`` URL; the loopback Jira of ``jira_server`` serves them over real
HTTP with a personal access token, and the real Model (PostgreSQL, mutual
TLS) stores them: the SHA-256 and size it computed from the bytes it
received are the source's, a file several chunks long included; the
importer asks for ``--file-concurrency`` files at once and the entries keep
the source's order; a ``--refresh`` reads and sends none of them again; a
large file is never held whole in the importer's memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from import_support import ADMIN, MakeSettings, find, history, usernames
from jira_server import Jira, serve

from bugless_core.attachments import CHUNK_BYTES, MiB
from bugless_import import ImportSettings, run_import
from bugless_import.sources.jira import JiraImporter
from bugless_proto import v1

TOKEN = "jira-pat-0123456789"
T0 = datetime(2022, 6, 1, 8, 0, tzinfo=UTC)
ANN = {"name": "ann.k", "key": "ann.k", "emailAddress": "ann@example.com", "displayName": "Ann"}
BOB = {"name": "bob", "key": "bob", "displayName": "Bob"}


def _stamp(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _jira_export(
    root: Path,
    files_root: Path,
    url: str,
    key: str,
    files: list[tuple[int, str, bytes, dict[str, str]]],
) -> Path:
    """A search page of issue ``key`` with ``files`` (id, name, bytes, author), an hour apart.

    The bytes go to ``files_root/ID/NAME``, which the loopback Jira serves
    at the attachments' ``content`` URLs.
    """
    attachments = []
    for hours, (number, name, content, author) in enumerate(files, start=1):
        (files_root / str(number)).mkdir(parents=True)
        (files_root / str(number) / name).write_bytes(content)
        attachments.append(
            {
                "id": str(number),
                "filename": name,
                "author": author,
                "created": _stamp(hours),
                "size": len(content),
                "mimeType": "application/octet-stream",
                "content": f"{url}secure/attachment/{number}/{quote(name)}",
            }
        )
    issue = {
        "id": "30001",
        "self": f"{url}rest/api/2/issue/30001",
        "key": key,
        "fields": {
            "summary": "Telemetry stalls under load",
            "description": "Traces attached.",
            "issuetype": {"name": "Bug"},
            "priority": {"name": "High"},
            "status": {"name": "To Do"},
            "created": _stamp(0),
            "updated": _stamp(len(files) + 1),
            "reporter": ANN,
            "components": [],
            "labels": [],
            "comment": {
                "comments": [
                    {"id": "1", "author": BOB, "created": _stamp(0.5), "body": "Same here."}
                ],
                "total": 1,
            },
            "attachment": attachments,
        },
        "changelog": {"histories": []},
    }
    root.mkdir(parents=True, exist_ok=True)
    page = {"startAt": 0, "maxResults": 1, "total": 1, "issues": [issue]}
    (root / "search-0000.json").write_text(json.dumps(page), encoding="utf-8")
    return root


def _token_file(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "jira-token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return {"token-file": str(path)}


async def test_jira_files_stream_from_their_content_urls_a_few_at_a_time_in_order(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub, tmp_path: Path
) -> None:
    rng = random.Random(61)
    files = [
        (101, "crash log.txt", b"T+0 stall\n" * 30, ANN),
        (102, "trace.bin", rng.randbytes(3 * CHUNK_BYTES + 17), BOB),
        (103, "screen.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), ANN),
        (104, "notes.txt", b"see trace.bin\n", BOB),
    ]
    with serve(Jira(tmp_path / "served", TOKEN, hold=3)) as server:
        root = _jira_export(tmp_path / "jira", tmp_path / "served", server.url, "FILES-1", files)
        importer = JiraImporter(str(root), _token_file(tmp_path))
        settings = make_settings(file_concurrency=3)
        report = await run_import(importer, settings)
        assert report.created == 1
        total = sum(len(content) for _, _, content, _ in files)
        assert (report.files_sent, report.bytes_sent, report.files_skipped) == (4, total, [])
        assert server.most_in_flight == 3, "three files asked for at once, never more"
        assert sorted(server.requests) == [
            "/secure/attachment/101/crash%20log.txt",
            "/secure/attachment/102/trace.bin",
            "/secure/attachment/103/screen.png",
            "/secure/attachment/104/notes.txt",
        ], "each file read once"
        assert set(server.authorizations) == {f"Bearer {TOKEN}"}

        (issue,) = await find(model, "jira:FILES-1")
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        stored = list(listed.attachments)
        assert [(f.name, f.size, f.sha256, f.created_at) for f in stored] == [
            (name, len(content), hashlib.sha256(content).hexdigest(), T0 + timedelta(hours=n))
            for n, (_, name, content, _) in enumerate(files, start=1)
        ], "the Model's hash of what it received is the source's, in the source's order"
        assert await usernames(auth, [f.uploader for f in stored[:2]]) == ["ann", "bob"]
        entries = await history(model, issue.id)
        assert [[a.name for a in e.attachments] for e in entries[1:]] == [
            [],  # Bob's comment, half an hour in
            ["crash log.txt"],
            ["trace.bin"],
            ["screen.png"],
            ["notes.txt"],
        ]

        server.requests.clear()
        refreshed = await run_import(
            JiraImporter(str(root), _token_file(tmp_path)),
            make_settings(refresh=True, file_concurrency=3),
        )
        assert (refreshed.unchanged, refreshed.entries_written) == (1, 0)
        assert (refreshed.files_sent, refreshed.bytes_sent) == (0, 0)
        assert server.requests == [], "a refresh reads no file the Model holds"


async def test_a_large_file_is_never_held_whole_in_memory(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """The importer's peak allocation stays far below the file: chunks, not the file.

    Measured: a peak of about 3.8 MB whether the file is 8 or 24 MiB (a few
    512 KiB chunks in their copies: the HTTP read, the message, the frame);
    reading it whole first, as before, peaked at 28 MB for this 16 MiB file.
    """
    size = 16 * MiB
    content = random.Random(62).randbytes(size)
    with serve(Jira(tmp_path / "served", TOKEN)) as server:
        root = _jira_export(
            tmp_path / "jira", tmp_path / "served", server.url, "MEM-1",
            [(201, "dump.bin", content, ANN)],
        )  # fmt: skip
        digest = hashlib.sha256(content).hexdigest()
        del content
        importer = JiraImporter(str(root), _token_file(tmp_path))
        tracemalloc.start()
        try:
            report = await run_import(importer, make_settings(file_concurrency=1))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (report.files_sent, report.bytes_sent) == (1, size)
    (issue,) = await find(model, "jira:MEM-1")
    listed = await model.list_attachments(
        v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
    )
    assert [f.sha256 for f in listed.attachments] == [digest]
    assert peak < size // 2, f"peak {peak} bytes while copying a {size}-byte file"


def test_the_token_goes_to_the_issue_s_jira_only_and_an_export_s_file_is_read_from_disk(
    tmp_path: Path,
) -> None:
    with serve(Jira(tmp_path / "served", TOKEN)) as server:
        files = [(301, "a.txt", b"a", ANN), (302, "b.txt", b"b", ANN)]
        root = _jira_export(tmp_path / "jira", tmp_path / "served", server.url, "TOK-1", files)
        page = json.loads((root / "search-0000.json").read_text(encoding="utf-8"))
        moved = page["issues"][0]["fields"]["attachment"][1]
        moved["content"] = moved["content"].replace("127.0.0.1", "localhost")
        (root / "search-0000.json").write_text(json.dumps(page), encoding="utf-8")
        (issue,) = JiraImporter(str(root), _token_file(tmp_path)).issues()
        with issue.attachments[0].open() as first:
            assert first.read() == b"a"
        with pytest.raises(OSError, match="Jira answered 401"):
            issue.attachments[1].open()
        assert server.authorizations == [f"Bearer {TOKEN}", ""], "no token to another host"

        # Jira Cloud's content URL redirects to its media store: the token
        # goes to the Jira, not on to the media store.
        moved["content"] = f"{server.url}rest/api/2/attachment/content/302"
        (root / "search-0000.json").write_text(json.dumps(page), encoding="utf-8")
        server.requests.clear()
        server.authorizations.clear()
        (issue,) = JiraImporter(str(root), _token_file(tmp_path)).issues()
        with issue.attachments[1].open() as cloud:
            assert cloud.read() == b"b"
        assert list(zip(server.requests, server.authorizations, strict=True)) == [
            ("/rest/api/2/attachment/content/302", f"Bearer {TOKEN}"),
            ("/media/302/b.txt", ""),
        ]

        (root / "attachments" / "302").mkdir(parents=True)
        (root / "attachments" / "302" / "b.txt").write_bytes(b"exported b")
        server.requests.clear()
        (issue,) = JiraImporter(str(root), {}).issues()
        with issue.attachments[1].open() as second:
            assert second.read() == b"exported b"
        assert server.requests == [], "the export's attachments/ID/NAME, not the network"


def test_a_file_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="file concurrency must be at least 1, not 0"):
        ImportSettings(dry_run=True, file_concurrency=0)


async def test_a_download_that_breaks_off_mid_body_is_read_again_whole_never_stored_short(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """The connection drops after half the bytes: the file is read again from its start.

    Before, the file was left out: ``http.client`` read the short body as a
    plain end, and the Model refused an upload shorter than its declared
    size (reported as ``header.size: N bytes declared, M were sent``). Now
    the upload of those bytes is abandoned and the file read again, within
    the ``retries`` budget; past it the file is reported as broken off and
    nothing is stored.
    """
    content = random.Random(63).randbytes(2 * CHUNK_BYTES + 1234)
    with serve(Jira(tmp_path / "served", TOKEN, break_off=1)) as server:
        root = _jira_export(
            tmp_path / "jira", tmp_path / "served", server.url, "BRK-1",
            [(401, "core.bin", content, ANN)],
        )  # fmt: skip
        report = await run_import(JiraImporter(str(root), _token_file(tmp_path)), make_settings())
        assert (report.files_sent, report.bytes_sent, report.files_skipped) == (1, len(content), [])
        assert server.requests == ["/secure/attachment/401/core.bin"] * 2, "read again, once"
        (issue,) = await find(model, "jira:BRK-1")
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert [(f.size, f.sha256) for f in listed.attachments] == [
            (len(content), hashlib.sha256(content).hexdigest())
        ]

    # It breaks off every time: two GETs with retries=1, then reported; nothing stored.
    with serve(Jira(tmp_path / "served2", TOKEN, break_off=10)) as server:
        root = _jira_export(
            tmp_path / "jira2", tmp_path / "served2", server.url, "BRK-2",
            [(402, "core.bin", content, ANN)],
        )  # fmt: skip
        options = {**_token_file(tmp_path), "retries": "1"}
        report = await run_import(JiraImporter(str(root), options), make_settings())
        assert report.files_sent == 0
        ((external_id, name, why),) = report.files_skipped
        assert (external_id, name) == ("jira:BRK-2", "core.bin")
        assert why == (
            f"unreadable in the source: {server.url}secure/attachment/402/core.bin: the body "
            f"broke off after {len(content) // 2} bytes ({len(content) - len(content) // 2} "
            "bytes short of its Content-Length)"
        )
        assert server.broken == 2
        (issue,) = await find(model, "jira:BRK-2")
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert list(listed.attachments) == []


async def test_a_refresh_finds_a_file_whose_time_the_history_moved_later(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """A file Jira lists as attached before the issue was created (clones and moves do that).

    The history is in time order, so its entry is at the issue's creation;
    the Model keeps that time as the file's. A refresh looked the file up by
    the source's time, did not find it, and read and sent it again.
    """
    with serve(Jira(tmp_path / "served", TOKEN)) as server:
        root = _jira_export(
            tmp_path / "jira", tmp_path / "served", server.url, "EARLY-1",
            [(501, "early.txt", b"copied with the clone\n", ANN)],
        )  # fmt: skip
        page_path = root / "search-0000.json"
        page = json.loads(page_path.read_text(encoding="utf-8"))
        page["issues"][0]["fields"]["attachment"][0]["created"] = _stamp(-2)
        page_path.write_text(json.dumps(page), encoding="utf-8")
        first = await run_import(JiraImporter(str(root), _token_file(tmp_path)), make_settings())
        assert first.files_sent == 1
        (issue,) = await find(model, "jira:EARLY-1")
        listed = await model.list_attachments(
            v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert [f.created_at for f in listed.attachments] == [T0], "at the issue's creation"

        server.requests.clear()
        refreshed = await run_import(
            JiraImporter(str(root), _token_file(tmp_path)), make_settings(refresh=True)
        )
        assert (refreshed.unchanged, refreshed.files_sent) == (1, 0)
        assert server.requests == [], "the file the Model holds is not read again"
