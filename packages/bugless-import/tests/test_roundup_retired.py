"""Roundup's retired users keep their names in the import; their files are copied.

REST lists no retired user, so before, every issue, message and change a
retired user made was imported as ``ghost``'s: the team lost who reported
and who said what. Roundup still answers for a retired user by id, and the
importer now reads them there. Their files are copied (REST ``binary_content``),
each by its uploader at its time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from import_support import ADMIN, MakeSettings, find, history, usernames
from roundup_support import ADMIN_PASSWORD, ROUNDUP_ADMIN, SERVER, _as, _change, _create

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.sources.roundup import INTERFACES_PY, RoundupImporter
from bugless_proto import v1


@pytest.fixture(scope="module")
def retired_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tracker where quinn reported an issue, attached a file, and was retired."""
    home = tmp_path_factory.mktemp("roundup-retired") / "tracker"
    settings = (
        "mail_domain=example.invalid,tracker_web=http://127.0.0.1:9/,mail_host=127.0.0.1,"
        f"mail_debug={home.parent / 'outgoing-mail.txt'}"
    )
    for args in (["install", "classic", "sqlite", settings], ["initialise", ADMIN_PASSWORD]):
        if args[0] == "initialise":
            (home / "interfaces.py").write_text(INTERFACES_PY, encoding="utf-8")
        subprocess.run([ROUNDUP_ADMIN, "-i", str(home), *args], check=True, capture_output=True)
    db = _as(home, "admin")
    db.user.create(username="ann", realname="Ann Roundup", roles="User")
    db.user.create(
        username="quinn", realname="Quinn Old", address="quinn@old.example", roles="User"
    )
    db.commit()
    db.close()
    issue = _create(home, "quinn", "Valve leaks", "It leaks at 3 bar.")
    _change(home, "quinn", issue, "Still leaking.")
    db = _as(home, "quinn")
    log = db.file.create(name="pressure.csv", content="t,bar\n0,3\n", type="text/csv")
    db.issue.set(issue, files=[log])
    db.commit()
    db.close()
    _change(home, "ann", issue, "Quinn left; taking it.", assignedto="ann")
    db = _as(home, "admin")
    db.user.retire(db.user.lookup("quinn"))
    db.commit()
    db.close()
    return home


@contextlib.contextmanager
def _serve(home: Path, **env: str) -> Iterator[str]:
    """``home`` served over loopback (``env``: the server's extra environment)."""
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), server.stderr.read().decode() if server.stderr else "no port"
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def retired_url(retired_home: Path) -> Iterator[str]:
    """The tracker of :func:`retired_home`, served."""
    with _serve(retired_home) as url:
        yield url


async def test_a_retired_users_issues_keep_their_name_and_files_are_counted(
    retired_url: str,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "retired"}
    report = await run_import(RoundupImporter(retired_url, options), make_settings())
    assert report.created == 1
    assert "quinn@roundup" in report.placeholders
    assert report.attachments == 1
    assert (report.files_sent, report.bytes_sent, report.files_skipped) == (1, 10, [])
    (issue,) = await find(model, "roundup:retired#1")
    entries = await history(model, issue.id)
    # The file is quinn's entry of its own at the file's creation, among the others by time.
    (attaching,) = [e for e in entries if e.attachments]
    assert [a.name for a in attaching.attachments] == ["pressure.csv"]
    others = [e for e in entries if not e.attachments]
    names = await usernames(auth, [issue.reporter, *(e.author for e in others)])
    assert names == ["quinn@roundup", "quinn@roundup", "quinn@roundup", "ann"]
    (file,) = attaching.attachments
    assert await usernames(auth, [file.uploader]) == ["quinn@roundup"]
    assert file.created_at == attaching.created_at
    first, last, attached = issue.created_at, others[-1].created_at, file.created_at
    assert first is not None
    assert last is not None
    assert attached is not None
    assert first <= attached <= last
    assert (file.size, file.declared_content_type, file.content_type) == (
        10,
        "text/csv",
        "text/plain",
    )
    users = await call(auth.get_users, v1.GetUsersRequest(user_ids=[issue.reporter]))
    assert [(u.display_name, u.email) for u in users.users] == [("Quinn Old", "quinn@old.example")]


async def test_a_roundup_file_whose_download_breaks_off_is_read_again_whole(
    retired_home: Path, make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """Roundup's file downloads (its own session's opener) are read again like the others.

    Before, Roundup's ``binary_content`` was read outside ``_http.Download``:
    a body cut off halfway left the file out (the Model refused the short
    upload).
    """
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "broken"}
    with _serve(retired_home, ROUNDUP_BREAK_FILES="1") as url:
        report = await run_import(RoundupImporter(url, options), make_settings())
    assert (report.files_sent, report.bytes_sent, report.files_skipped) == (1, 10, [])
    (issue,) = await find(model, "roundup:broken#1")
    listed = await call(
        model.list_attachments, v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
    )
    assert [(f.name, f.sha256) for f in listed.attachments] == [
        ("pressure.csv", hashlib.sha256(b"t,bar\n0,3\n").hexdigest())
    ]
