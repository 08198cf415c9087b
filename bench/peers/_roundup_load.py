"""Load the shared data set into a Roundup tracker through its hyperdb API.

Run by the Roundup virtualenv's interpreter (``roundup`` and the standard
library only)::

    roundup-venv/bin/python _roundup_load.py TRACKER_HOME DATASET_DIR PASSWORD

The tracker is the ``classic`` template with a ``component`` class linked
from ``issue`` (``_roundup.py`` patches the schema before ``initialise``).
Statuses and priorities of the data set are added next to the classic ones
(with an ``order`` that sorts P0 first); users ``user0001``.. are created with
the ``User`` role (``PASSWORD`` for the benchmark's API user). Each issue is
``db.issue.create`` -d with its description as its first ``msg``; each later
entry adds a ``msg`` and/or sets the status, as the web and mail gateways do.
The load commits every :data:`BATCH` issues. Detectors run as in production
(outgoing mail goes to the file named by ``[mail] debug``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import roundup.instance  # the Roundup venv only (untyped: see pyproject's mypy overrides)
from roundup import date

BATCH = 500
BENCH_USER = "bench"


def _ensure(klass: Any, names: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for order, name in enumerate(names, start=1):
        try:
            ids[name] = klass.lookup(name)
        except KeyError:
            ids[name] = klass.create(name=name, order=str(order))
    return ids


def _date(epoch: float) -> date.Date:
    return date.Date(time.strftime("%Y-%m-%d.%H:%M:%S", time.gmtime(epoch)))


def load(home: str, dataset_dir: Path, password: str) -> None:
    meta = json.loads((dataset_dir / "meta.json").read_text())
    tracker = roundup.instance.open(home)
    db = tracker.open("admin")
    started = time.perf_counter()
    try:
        if db.issue.list():
            print("roundup: issues present, nothing to load")
            return
        statuses = _ensure(db.status, meta["statuses"])
        priorities = _ensure(db.priority, meta["priorities"])
        components = {path: db.component.create(name=path) for path in meta["components"]}
        users = {name: db.user.create(username=name, roles="User") for name in meta["users"]}
        users[BENCH_USER] = db.user.create(
            username=BENCH_USER, roles="User", password=password_value(password, db.config)
        )
        db.commit()
        with (dataset_dir / "issues.jsonl").open() as lines:
            for count, line in enumerate(lines, start=1):
                record = json.loads(line)
                reporter = users[record["reporter"]]
                first = db.msg.create(
                    content=record["description"],
                    author=reporter,
                    date=_date(record["created"]),
                )
                nosy = {reporter, *(users[u] for u in record["cc"])}
                fields: dict[str, Any] = {
                    "title": record["title"],
                    "messages": [first],
                    "priority": priorities[record["priority"]],
                    "status": statuses[record["status"]],
                    "component": components[record["component"]],
                }
                if record["assignee"]:
                    fields["assignedto"] = users[record["assignee"]]
                    nosy.add(users[record["assignee"]])
                fields["nosy"] = sorted(nosy)
                issue_id = db.issue.create(**fields)
                if int(issue_id) != record["id"]:
                    msg = f"roundup gave id {issue_id} to issue {record['id']}"
                    raise RuntimeError(msg)
                messages = [first]
                for change in record["changes"]:
                    update: dict[str, Any] = {}
                    if change["comment"]:
                        messages.append(
                            db.msg.create(
                                content=change["comment"],
                                author=users[change["author"]],
                                date=_date(change["at"]),
                            )
                        )
                        update["messages"] = list(messages)
                    if change["status"]:
                        update["status"] = statuses[change["status"]]
                    if update:
                        db.issue.set(issue_id, **update)
                if count % BATCH == 0:
                    db.commit()
                if count % 2000 == 0:
                    print(
                        f"roundup: {count} issues, {time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
        db.commit()
    finally:
        db.close()
    print(f"roundup: loaded in {time.perf_counter() - started:.0f} s", flush=True)


def password_value(plain: str, config: Any) -> Any:
    """A hyperdb ``Password`` for ``plain`` (hashed with the tracker's settings)."""
    from roundup.password import Password  # noqa: PLC0415

    return Password(plain, config=config)


if __name__ == "__main__":
    load(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
