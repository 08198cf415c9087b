"""Load the shared data set into a Trac environment through Trac's own model API.

Run by the Trac virtualenv's interpreter (it imports ``trac`` and the standard
library only)::

    trac-venv/bin/python _trac_load.py ENV_DIR DATASET_DIR

Enumerations (priorities, types) and components are replaced by the data
set's (Trac's default resolutions are kept); every ticket is
``trac.ticket.model.Ticket.insert`` -ed with its creation time, and each
later entry is ``Ticket.save_changes`` with its author, comment and time,
all in one transaction (the Trac API joins the nested transactions of
``insert``/``save_changes`` to the outer one).
bugless statuses map to Trac's default workflow: open ones by name, closed
ones to ``closed`` with a resolution.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trac.env import Environment
from trac.ticket.model import Component, Priority, Ticket, Type

RESOLUTIONS = {
    "fixed": "fixed",
    "verified": "fixed",
    "wont_fix_not_reproducible": "worksforme",
    "wont_fix_intended_behavior": "invalid",
    "wont_fix_obsolete": "wontfix",
    "wont_fix_infeasible": "wontfix",
    "duplicate": "duplicate",
}


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _replace_enum(env: Environment, cls: Any, names: list[str]) -> None:
    for old in list(cls.select(env)):
        old.delete()
    for n, name in enumerate(names, start=1):
        item = cls(env)
        item.name = name
        item.value = str(n)
        item.insert()


def _apply_status(ticket: Ticket, status: str) -> None:
    if status in RESOLUTIONS:
        ticket["status"] = "closed"
        ticket["resolution"] = RESOLUTIONS[status]
    else:
        ticket["status"] = status
        ticket["resolution"] = ""


def load(env_dir: str, dataset_dir: Path) -> None:
    env = Environment(env_dir)
    meta = json.loads((dataset_dir / "meta.json").read_text())
    started = time.perf_counter()
    with env.db_transaction as db:
        if db("SELECT count(*) FROM ticket")[0][0]:
            print("trac: tickets present, nothing to load")
            return
        _replace_enum(env, Priority, meta["priorities"])
        _replace_enum(env, Type, meta["types"])
        for old in list(Component.select(env)):
            old.delete()
        for path in meta["components"]:
            component = Component(env)
            component.name = path
            component.insert()
        with (dataset_dir / "issues.jsonl").open() as lines:
            for count, line in enumerate(lines, start=1):
                record = json.loads(line)
                ticket = Ticket(env)
                ticket["summary"] = record["title"]
                ticket["description"] = record["description"]
                ticket["reporter"] = record["reporter"]
                ticket["owner"] = record["assignee"]
                ticket["cc"] = ", ".join(record["cc"])
                ticket["priority"] = record["priority"]
                ticket["type"] = record["type"]
                ticket["component"] = record["component"]
                _apply_status(ticket, record["status"])
                ticket_id = ticket.insert(when=_when(record["created"]))
                if ticket_id != record["id"]:
                    msg = f"trac gave id {ticket_id} to issue {record['id']}"
                    raise RuntimeError(msg)
                for change in record["changes"]:
                    if change["status"]:
                        _apply_status(ticket, change["status"])
                    ticket.save_changes(
                        change["author"], change["comment"], when=_when(change["at"])
                    )
                if count % 2000 == 0:
                    print(
                        f"trac: {count} tickets, {time.perf_counter() - started:.0f} s", flush=True
                    )
    print(f"trac: loaded in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    load(sys.argv[1], Path(sys.argv[2]))
