"""A real Roundup tracker, made through Roundup's own API, imported over its REST interface.

Roundup (from PyPI, the package's ``testing`` extra) installs a ``classic``
tracker on SQLite with ``roundup-admin``; users, issues, messages, keyword,
status, priority, title and nosy changes are made with Roundup's hyperdb API,
each change by the user who makes it (``tracker.open(username)``), as the web
and mail gateways make them. The tracker is served by Roundup's WSGI
application on a loopback port the server binds itself, and imported through
the real bugless stack. The result is compared with what Roundup itself
reports (``Class.history``, ``Class.get``), field by field and entry by entry.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from import_support import MakeSettings, find, history, usernames
from roundup_support import (
    ADMIN_PASSWORD,
    _as,
    _change,
    _create,
    _install,
    _served,
)

from bugless_core.errors import FailedPrecondition
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.roundup import RoundupImporter
from bugless_proto import v1
from bugless_testing.program import BUGLESS_SCRIPT

#: Issues made in bulk besides the three detailed ones (for the resume test).
BULK = 27
STATUS = {
    "unread": v1.Status.NEW,
    "chatting": v1.Status.ASSIGNED,
    "in-progress": v1.Status.ACCEPTED,
    "resolved": v1.Status.FIXED,
}
PRIORITY = {"critical": v1.Priority.P0, "urgent": v1.Priority.P1, "bug": v1.Priority.P2}
#: Roundup user -> bugless username: ann by e-mail, bob by username, others placeholders.
PEOPLE = {"ann": "ann", "bob": "bob", "tom": "tom@roundup", "zed": "zed@roundup"}


def _populate(home: Path) -> None:
    db = _as(home, "admin")
    try:
        for name, realname, address in (
            ("ann", "Ann Roundup", "ann@example.com"),
            ("bob", "Bob Roundup", "robert@roundup.example.org"),
            ("tom", "Tom Round", "tom@roundup.example.org"),
            ("zed", "", ""),
        ):
            extra = {"address": address} if address else {}
            db.user.create(username=name, realname=realname, roles="User", **extra)
        for keyword in ("engine", "safety", "pad"):
            db.keyword.create(name=keyword)
        db.commit()
    finally:
        db.close()
    one = _create(home, "tom", "Engine does not stop", "It keeps going.", priority="urgent",
                  keyword=["engine"])  # fmt: skip
    _change(home, "ann", one, "Reproduced on the pad.", status="in-progress", assignedto="ann",
            nosy=["tom", "ann"])  # fmt: skip
    _change(home, "tom", one, priority="critical", keyword=["safety", "pad"],
            title="Engine never stops")  # fmt: skip
    _change(home, "ann", one, "Fixed in the valve.", status="resolved")
    two = _create(home, "zed", "Pad lights flicker", "They flicker at night.")
    _change(home, "bob", two, "Which pad?", status="chatting")
    _change(home, "zed", two, "Pad 39A.")
    three = _create(home, "bob", "Countdown clock drifts", "Two seconds a day.", priority="urgent")
    _change(home, "tom", three, "Synced with NTP.", status="resolved", assignedto="tom")
    _change(home, "ann", three, "Still drifts.", status="in-progress", nosy=["bob", "ann"])
    _change(home, "bob", three, status="resolved")
    for n in range(BULK):
        issue = _create(home, "bob", f"Checklist item {n}", f"Item {n}.")
        _change(home, "ann", issue, f"Checked {n}.")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classic tracker on SQLite with the journal endpoint, populated."""
    home = tmp_path_factory.mktemp("roundup") / "tracker"
    _install(home)
    _populate(home)
    return home


@pytest.fixture(scope="module")
def roundup_url(tracker: Path) -> Iterator[str]:
    """The tracker served by Roundup's WSGI application on a port it bound itself."""
    with _served(tracker) as address:
        yield address


@pytest.fixture
def options(tmp_path: Path) -> dict[str, str]:
    """Sign in as Roundup's admin (which sees e-mail addresses)."""
    secret = tmp_path / "roundup-password"
    secret.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    return {"user": "admin", "password-file": str(secret), "tracker": "rocket"}


def _current(home: Path, issue: str) -> dict[str, Any]:
    db = _as(home, "admin")
    try:
        node = db.issue.getnode(issue)
        journal = db.issue.history(issue, skipquiet=False)
        created = journal[0][1]
        return {
            "title": node.title,
            "status": db.status.get(node.status, "name"),
            "priority": db.priority.get(node.priority, "name"),
            "assignee": db.user.get(node.assignedto, "username") if node.assignedto else "",
            "nosy": sorted(db.user.get(u, "username") for u in node.nosy),
            "creator": db.user.get(node.creator, "username"),
            "created": created,
            "description": db.msg.get(sorted(node.messages, key=int)[0], "content"),
        }
    finally:
        db.close()


def _instant(when: Any) -> datetime:
    """A Roundup ``Date`` (UTC, fractional seconds) as an aware datetime."""
    whole = int(when.second)
    micro = round((when.second - whole) * 1_000_000)
    return datetime(when.year, when.month, when.day, when.hour, when.minute, whole, micro, UTC)


async def test_the_dry_run_reports_and_writes_nothing(
    roundup_url: str, options: dict[str, str], make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    report = await run_import(RoundupImporter(roundup_url, options), make_settings(dry_run=True))
    assert report.issues == 3 + BULK
    assert report.entries == 3 + 2 + 3 + BULK
    assert report.comments == 2 + 2 + 2 + BULK
    assert report.matched["email"] == 1, "ann by e-mail"
    assert report.matched["username"] == 1, "bob by username"
    # No ghost@roundup: every issue and change has an author.
    assert sorted(report.placeholders) == ["tom@roundup", "zed@roundup"]
    assert ("labels", "safety", 1) in report.unmapped
    assert await find(model, "roundup:rocket#1") == []


async def test_every_issue_matches_roundup_field_by_field_and_entry_by_entry(
    tracker: Path,
    roundup_url: str,
    options: dict[str, str],
    *,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[labels]\nsafety = "hotlist:Roundup safety"\n', encoding="utf-8")
    settings = make_settings(mapping=mapping)
    report = await run_import(RoundupImporter(roundup_url, options), settings)
    assert report.created == 3 + BULK
    for number in (1, 2, 3, 4, 3 + BULK):
        (issue,) = await find(model, f"roundup:rocket#{number}")
        await _compare(tracker, str(number), issue, model, auth)

    (first,) = await find(model, "roundup:rocket#1")
    entries = await history(model, first.id)
    assert [
        sorted(
            (c.field, c.new_value) for c in e.changes if c.field in {"status", "priority", "title"}
        )
        for e in entries[1:]
    ] == [
        [("status", "ACCEPTED")],
        [("priority", "P0"), ("title", "Engine never stops")],
        [("status", "FIXED")],
    ]
    assert sorted(c.field for c in entries[1].changes) == [
        "assignee",
        "cc",
        "status",
    ]
    assert len(first.hotlist_ids) == 1, "the safety keyword went to its hotlist"
    assert first.closed_at == entries[3].created_at
    (third,) = await find(model, "roundup:rocket#3")
    third_entries = await history(model, third.id)
    assert third.closed_at == third_entries[-1].created_at, "closed again after the reopening"

    with (settings.state_dir / "roundup-redirects.csv").open(encoding="utf-8") as f:
        rows = {r["old_url"]: r["new_url"] for r in csv.DictReader(f)}
    assert rows[f"{roundup_url}issue1"] == f"https://bugless.example.org/issues/{first.id}"
    assert len(rows) == 3 + BULK

    again = await run_import(
        RoundupImporter(roundup_url, options),
        make_settings(mapping=mapping, state_dir=settings.state_dir, refresh=True),
    )
    assert (again.created, again.extended, again.unchanged) == (0, 0, 3 + BULK), "idempotent"


async def _compare(
    home: Path, number: str, issue: v1.Issue, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    roundup = _current(home, number)
    assert issue.title == roundup["title"]
    assert issue.status is STATUS[roundup["status"]]
    assert issue.priority is PRIORITY[roundup["priority"]]
    assert issue.external_id == f"roundup:rocket#{number}"
    assert issue.created_at == _instant(roundup["created"])
    reporter, assignee = await usernames(auth, [issue.reporter, issue.assignee or issue.reporter])
    assert reporter == PEOPLE[roundup["creator"]]
    if roundup["assignee"]:
        assert assignee == PEOPLE[roundup["assignee"]]
    else:
        assert not issue.assignee
    assert sorted(await usernames(auth, list(issue.cc))) == sorted(
        PEOPLE[u] for u in roundup["nosy"]
    )
    entries = await history(model, issue.id)
    assert entries[0].comment == roundup["description"]
    expected = _journal(home, number)
    assert len(entries) == 1 + len(expected)
    authors = await usernames(auth, [e.author for e in entries[1:]])
    for entry, author, (when, user, text) in zip(entries[1:], authors, expected, strict=True):
        assert entry.created_at == when
        assert author == PEOPLE[user]
        assert entry.comment == text
        assert entry.imported_from == f"roundup:rocket#{number}"
    assert issue.modified_at == (expected[-1][0] if expected else issue.created_at)


def _journal(home: Path, issue: str) -> list[tuple[datetime, str, str]]:
    """(time, author, comment) of each ``set`` in Roundup's journal, oldest first."""
    db = _as(home, "admin")
    try:
        found = []
        for _id, when, user, action, params in db.issue.history(issue, skipquiet=False):
            if action == "set":
                added = [m for op, ids in params.get("messages", ()) if op == "+" for m in ids]
                text = "\n\n".join(db.msg.get(m, "content") for m in added)
                found.append((_instant(when), db.user.get(user, "username"), text))
        return found
    finally:
        db.close()


async def test_without_the_journal_endpoint_the_import_says_how_to_add_it(
    roundup_url: str, options: dict[str, str]
) -> None:
    importer = RoundupImporter(roundup_url, options)
    importer.get = _hide_history(importer.get)  # type: ignore[method-assign]
    with pytest.raises(FailedPrecondition, match="INTERFACES_PY"):
        next(importer.issues())
    messages_only = RoundupImporter(roundup_url, {**options, "history": "messages"})
    first = next(messages_only.issues())
    assert [e.comment for e in first.entries] == ["Reproduced on the pad.", "Fixed in the valve."]
    assert all(not e.changes for e in first.entries)


async def test_an_issue_destroyed_between_listing_and_reading_is_skipped_and_reported(
    roundup_url: str, tracker: Path, options: dict[str, str]
) -> None:
    doomed = _create(tracker, "admin", "doomed", "gone before it is read")
    importer = RoundupImporter(roundup_url, options)
    issues = importer.issues()
    first = next(issues)  # every issue is listed by now; each is read as it is reached
    db = _as(tracker, "admin")
    try:
        db.issue.destroy(doomed)
        db.commit()
    finally:
        db.close()
    rest = list(issues)
    keys = [first.key, *(issue.key for issue in rest)]
    assert f"rocket#{doomed}" not in keys
    assert keys == sorted(keys, key=lambda key: int(key.split("#")[1]))
    assert rest, "the issues after the destroyed one are still read"
    assert importer.skipped == [f"issue{doomed}: listed, then gone (404) when read"]


def _hide_history(get: Any) -> Any:
    """The tracker as a stock one answers: no ``/rest/history`` route (404)."""

    def hidden(path: str, **query: object) -> Any:
        return None if path.startswith("history/") else get(path, **query)

    return hidden


async def test_a_wrong_password_is_refused(roundup_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "wrong"
    secret.write_text("not-the-password", encoding="utf-8")
    importer = RoundupImporter(roundup_url, {"user": "admin", "password-file": str(secret)})
    with pytest.raises(Exception, match="refused"):
        list(importer.people())


async def test_ctrl_c_then_the_same_command_imports_the_rest_exactly_once(
    roundup_url: str,
    options: dict[str, str],
    *,
    bugless_stack: LocalStack,
    import_token: str,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    files = bugless_stack.pki.service_certificate("import")
    args = [
        "import", "roundup", roundup_url, "--option", "user=admin",
        "--option", f"password-file={options['password-file']}",
        "--option", "tracker=resume",
        "--model", f"{bugless_stack.model.host}:{bugless_stack.model.port}",
        "--auth", f"{bugless_stack.auth.host}:{bugless_stack.auth.port}",
        "--state-dir", str(state), "--concurrency", "1", "--batch-size", "1", "--quiet",
        "--tls-ca", str(bugless_stack.pki.ca_file), "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
    ]  # fmt: skip
    env = {**os.environ, "BUGLESS_IMPORT_TOKEN": import_token}
    done = state / "roundup-done.jsonl"
    first = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        while not done.exists() or len(done.read_text().splitlines()) < 5:
            await asyncio.sleep(0.01)
            assert first.returncode is None, (await first.communicate())[1].decode()
    first.send_signal(signal.SIGINT)
    _, err = await first.communicate()
    halfway = len(done.read_text().splitlines())
    assert first.returncode == 130, err.decode()
    assert 5 <= halfway < 3 + BULK, "stopped partway"
    second = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await second.communicate()
    assert second.returncode == 0, err.decode()
    assert f"{halfway} done in an earlier run" in out.decode()
    records = [json.loads(line) for line in done.read_text().splitlines()]
    assert sorted(r["external_id"] for r in records) == sorted(
        f"roundup:resume#{n}" for n in range(1, 4 + BULK)
    ), "every issue once: no gaps, no repeats"
    for n in range(1, 4 + BULK):
        assert len(await find(model, f"roundup:resume#{n}")) == 1
