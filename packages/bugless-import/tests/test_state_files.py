"""The state directory's JSON-lines files after a run stopped while writing one.

A run appends one line per record and flushes it (``<source>-done.jsonl``,
``<source>-refused.jsonl``); a run stopped mid-write (the disk full, the
machine down) leaves the last line cut short, which the next run must read
past, and cut, before it appends. The whole resume is test_resume.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bugless_core.errors import FailedPrecondition
from bugless_import.state import DoneState, read_records

FIRST = {"external_id": "github:acme/x#1", "issue_id": 7, "url": "u1", "files": True}
SECOND = {"external_id": "github:acme/x#2", "issue_id": 8, "url": "u2", "files": True}


def _line(record: dict[str, object]) -> str:
    return json.dumps(record) + "\n"


def test_a_last_line_cut_short_is_left_out_and_cut_before_the_next_append(
    tmp_path: Path,
) -> None:
    done = tmp_path / "github-done.jsonl"
    done.write_text(_line(FIRST) + _line(SECOND)[:20])

    assert DoneState.read(tmp_path, "github") == {"github:acme/x#1": 7}
    assert done.read_text() == _line(FIRST) + _line(SECOND)[:20], "a read changes nothing"

    state = DoneState(tmp_path, "github")
    state.record("github:acme/x#2", 8, "u2", files=True, linked=False)
    state.close()

    assert [r["external_id"] for r in read_records(done)] == [
        "github:acme/x#1",
        "github:acme/x#2",
    ]
    assert len(done.read_text().splitlines()) == 2


def test_a_whole_last_record_without_its_line_end_gets_one(tmp_path: Path) -> None:
    done = tmp_path / "github-done.jsonl"
    done.write_text(_line(FIRST).rstrip("\n"))

    state = DoneState(tmp_path, "github")
    state.record("github:acme/x#2", 8, "u2", files=True, linked=False)
    state.close()

    assert [r["issue_id"] for r in read_records(done)] == [7, 8]


def test_a_bad_line_before_the_last_is_an_error_naming_the_file_and_line(
    tmp_path: Path,
) -> None:
    done = tmp_path / "github-done.jsonl"
    done.write_text(_line(FIRST) + "edited by hand\n" + _line(SECOND))

    with pytest.raises(FailedPrecondition, match=r"github-done\.jsonl, line 2: not a record"):
        DoneState(tmp_path, "github")
    assert done.read_text().count("\n") == 3, "nothing cut"
