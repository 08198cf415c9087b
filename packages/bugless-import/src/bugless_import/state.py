"""What a run keeps in ``--state-dir``: the issues done, the report, the redirects CSV.

``<source>-done.jsonl`` is what makes a run resumable (one line per issue the
Model answered for, flushed as it lands); ``<source>-refused.jsonl`` names
the source files the Model refused, which later runs do not read again; the
report and
``<source>-redirects.csv`` are written from it at the end of every run, so
they cover every issue imported so far, by this run or an earlier one.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bugless_core.errors import FailedPrecondition
from bugless_core.importer import SourceAttachment
from bugless_import.report import ImportReport
from bugless_import.settings import ImportSettings


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a state file (one JSON object a line; none if it does not exist).

    A last line cut short (the run stopped while writing it: the disk filled,
    the machine went down) is left out: what it recorded is done or read
    again, as if the run had stopped just before. With ``repair`` (a run
    that holds the state directory and appends next) it is cut from the
    file too, so the next line starts a line of its own.

    Raises:
        FailedPrecondition: a line before the last is not a record (naming
            the file and the line): not something a stopped run leaves.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    start = 0
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        try:
            if line.strip():
                records.append(json.loads(line))
        except ValueError as exc:
            if line.endswith(b"\n"):
                msg = f"{path}, line {number}: not a record ({exc}); was the file edited?"
                raise FailedPrecondition(msg) from exc
            if repair:
                os.truncate(path, start)
            return records
        start += len(line)
    if repair and data and not data.endswith(b"\n"):
        # A whole record whose line end was not written: end its line.
        with path.open("ab") as out:
            out.write(b"\n")
    return records


class DoneState:
    """``<source>-done.jsonl``: one line per imported issue, flushed as it lands."""

    def __init__(self, directory: Path, source: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{source}-done.jsonl"
        self.done: dict[str, dict[str, object]] = {}
        for record in read_records(self.path, repair=True):
            self.done[str(record["external_id"])] = record
        self._file = self.path.open("a", encoding="utf-8")

    @staticmethod
    def read(directory: Path, source: str) -> dict[str, int]:
        """The issue ids of the external ids an earlier run recorded (none: no state yet)."""
        records = read_records(directory / f"{source}-done.jsonl")
        return {str(r["external_id"]): int(r["issue_id"]) for r in records}

    def with_files(self, external_id: str) -> bool:
        """Whether the issue's history may carry file entries.

        An issue imported by a run that did not copy files (a record without
        ``files``) has a history position counted without them: file entries
        now would shift it, and a refresh would append entries it has. So
        such an issue keeps a history without files.
        """
        done = self.done.get(external_id)
        return done is None or bool(done.get("files"))

    def with_linked_files(self, external_id: str) -> bool:
        """Whether the issue's history may carry the files its text links (GitHub's).

        As :meth:`with_files`, for a record without ``linked``: an entry for
        a file its description links would shift its history position, so
        such an issue keeps its history without linked files.
        """
        done = self.done.get(external_id)
        return done is None or bool(done.get("linked"))

    def record(
        self, external_id: str, issue_id: int, url: str, *, files: bool, linked: bool
    ) -> None:
        """Note that ``external_id`` is ``issue_id`` now, flushed at once (a crash keeps it)."""
        record: dict[str, object] = {
            "external_id": external_id, "issue_id": issue_id, "url": url, "files": files,
            "linked": linked,
        }  # fmt: skip
        self.done[external_id] = record
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; the records are on disk already."""
        self._file.close()


#: A source file as the refusals know it: the issue's external id, the file's
#: name, uploader (the source's key), time in the history and listed size.
_FileKey = tuple[str, str, str, str, int]


class RefusedFiles:
    """``<source>-refused.jsonl``: source files the Model refused, and why.

    A file over the Model's size limit, or of a type the deployment does not
    accept, was read (perhaps gigabytes, over a slow link) on every
    ``--refresh`` or resumed run only to be refused again. Noted here, it
    is skipped instead and the report says so; ``--retry-refused`` reads them
    again (after the limit or the accepted types changed). A file the source
    replaced (another size) is read again.
    """

    def __init__(self, directory: Path, source: str) -> None:
        """Read the refusals an earlier run noted in ``directory`` (none yet: empty)."""
        self.directory = directory
        self.path = directory / f"{source}-refused.jsonl"
        self.refused: dict[_FileKey, str] = {}
        for record in read_records(self.path, repair=True):
            key = (
                str(record["external_id"]), str(record["name"]), str(record["author"]),
                str(record["at"]), int(record["size"]),
            )  # fmt: skip
            self.refused[key] = str(record["why"])
        self._file: TextIO | None = None

    @staticmethod
    def _key(external_id: str, file: SourceAttachment, at: datetime) -> _FileKey:
        return external_id, file.name, file.author, at.isoformat(), file.size

    def why(self, external_id: str, file: SourceAttachment, at: datetime) -> str:
        """Why the Model refused ``file`` (its entry at ``at``) before; "" if it did not."""
        return self.refused.get(self._key(external_id, file, at), "")

    def record(self, external_id: str, file: SourceAttachment, at: datetime, why: str) -> None:
        """Note that the Model refused ``file``, flushed at once.

        A refusal noted already for the same reason (``--retry-refused``
        read the file again and the Model refused it again) adds no line:
        the file would otherwise grow by a line a run for as long as the
        limit stays.
        """
        key = self._key(external_id, file, at)
        if self.refused.get(key) == why:
            return
        self.refused[key] = why
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        names = ("external_id", "name", "author", "at", "size")
        self._file.write(json.dumps({**dict(zip(names, key, strict=True)), "why": why}) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file, if a refusal opened it."""
        if self._file is not None:
            self._file.close()
            self._file = None


def no_redirects_warning(source: str) -> str:
    """Why a run without ``--new-url`` writes no redirects CSV, and how to get one."""
    return (
        f"no --new-url: {source}-redirects.csv is not written (a web server on the old "
        "tracker's host redirects to absolute URLs, which need bugless's base URL); run the "
        "same command again with --new-url https://bugs.example.org to write it for every "
        "issue imported so far (nothing is imported twice)"
    )


def write_outputs(settings: ImportSettings, source: str, report: ImportReport) -> None:
    """The report and the redirect CSV of every issue done so far (all runs).

    Without ``--new-url`` there is no CSV (the report says so): its new URLs
    would be ``/issues/N``, which a redirect on the old tracker's host would
    send to a page of that host, not of bugless. An earlier run's CSV is left
    as it was.
    """
    directory = settings.state_dir
    (directory / f"{source}-report.txt").write_text(report.render() + "\n", encoding="utf-8")
    if not settings.new_url:
        return
    state = directory / f"{source}-done.jsonl"
    base = settings.new_url.rstrip("/")
    with (directory / f"{source}-redirects.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["old_url", "new_url", "external_id"])
        for record in read_records(state):
            new = f"{base}/issues/{record['issue_id']}"
            writer.writerow([record["url"], new, record["external_id"]])
