"""What the Roundup import tests share: a tracker's tools, its server script, changes as a user.

test_roundup builds and imports a real tracker; the relation, restricted,
retired and relation history tests make their own the same way. These live
here so no test module imports another (a moved test module must not break
its neighbours' collection).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from roundup import instance

from bugless_import.sources.roundup import INTERFACES_PY

ADMIN_PASSWORD = "roundup-admin-password"
ROUNDUP_ADMIN = str(Path(sys.executable).with_name("roundup-admin"))
SERVER = Path(__file__).with_name("roundup_server.py")

#: Loaded trackers by home (loading one is slow).
_TRACKERS: dict[Path, Any] = {}


def _as(home: Path, user: str) -> Any:
    """The tracker's database as ``user`` (the tracker is loaded once: that is slow)."""
    if home not in _TRACKERS:
        _TRACKERS[home] = instance.open(str(home))
    return _TRACKERS[home].open(user)


def _change(home: Path, user: str, issue: str, text: str = "", **values: Any) -> None:
    """``user`` changes ``issue`` (a message ``text``, property values), committed."""
    db = _as(home, user)
    try:
        for name in ("status", "priority"):
            if name in values:
                values[name] = db.getclass(name).lookup(values[name])
        if "keyword" in values:
            values["keyword"] = [db.keyword.lookup(k) for k in values["keyword"]]
        for name in ("assignedto", "nosy"):
            if name in values:
                value = values[name]
                values[name] = (
                    [db.user.lookup(u) for u in value] if isinstance(value, list) else
                    db.user.lookup(value)
                )  # fmt: skip
        if text:
            message = db.msg.create(content=text, author=db.getuid())
            values["messages"] = [*db.issue.get(issue, "messages"), message]
        db.issue.set(issue, **values)
        db.commit()
    finally:
        db.close()


def _create(home: Path, user: str, title: str, text: str, **values: Any) -> str:
    """``user`` opens an issue ``title`` with a first message ``text``; its id."""
    db = _as(home, user)
    try:
        message = db.msg.create(content=text, author=db.getuid())
        issue: str = db.issue.create(
            title=title,
            messages=[message],
            status=db.status.lookup(values.get("status", "unread")),
            priority=db.priority.lookup(values.get("priority", "bug")),
            keyword=[db.keyword.lookup(k) for k in values.get("keyword", [])],
            nosy=[db.getuid()],
        )
        db.commit()
        return issue
    finally:
        db.close()


def _install(home: Path, properties: str = "") -> None:
    """A classic Roundup tracker at ``home``, its issues given ``properties``."""
    settings = (
        "mail_domain=example.invalid,tracker_web=http://127.0.0.1:9/,mail_host=127.0.0.1,"
        f"mail_debug={home.parent / 'outgoing-mail.txt'}"
    )
    subprocess.run(
        [ROUNDUP_ADMIN, "-i", str(home), "install", "classic", "sqlite", settings],
        check=True,
        capture_output=True,
    )
    (home / "interfaces.py").write_text(INTERFACES_PY, encoding="utf-8")
    if properties:
        schema = home / "schema.py"
        text = schema.read_text(encoding="utf-8")
        stock = '                status=Link("status"))'
        assert stock in text, "classic's issue class is not as expected"
        schema.write_text(
            text.replace(stock, f'                status=Link("status"), {properties})'),
            encoding="utf-8",
        )
    subprocess.run(
        [ROUNDUP_ADMIN, "-i", str(home), "initialise", ADMIN_PASSWORD],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def _served(home: Path) -> Iterator[str]:
    """The tracker at ``home`` served over loopback: its base URL."""
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), server.stderr.read().decode() if server.stderr else "no port"
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)
