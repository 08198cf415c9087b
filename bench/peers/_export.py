"""The shared data set, written once as JSON Lines for every peer's loader.

bugless is seeded first (``bench.seed``: vocabulary, component ids and issues
are a pure function of the seed). The very same issues are then drawn again
from :class:`bench._dataset.IssueGenerator` with the vocabulary and component
ids the seeder used, and written in a tracker-neutral form that the loaders
in the peers' own virtualenvs read with the standard library alone:

``issues.jsonl``, one issue a line::

    {"id": 17, "title": "...", "description": "...", "reporter": "user0007",
     "assignee": "user0123" | "", "cc": [...], "priority": "P2", "type": "bug",
     "component": "Infra>CI>API", "status": "new" | "assigned",
     "created": 1.7e9, "changes": [{"at": 1.7e9, "author": "...",
     "comment": "...", "status": "fixed" | ""}]}

``meta.json``: the components (parents first), users, statuses, priorities,
types, and the targets the workloads need: the component whose open issues
the list page shows, the search word (occurring in ~1% of issues) and the id
of the issue that carries :data:`LONG_ISSUE_COMMENTS` extra comments.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import _dataset as data
from bugless_core import issue_fields
from bugless_proto import v1

LONG_ISSUE_COMMENTS = 30
SEARCH_SHARE = 0.01
#: The open statuses by the lower-case names the export writes.
OPEN_STATUSES = frozenset(s.name.lower() for s in issue_fields.OPEN_STATUSES)


def status_name(value: int) -> str:
    """``v1.Status`` value -> lower-case name (``wont_fix_obsolete``)."""
    return v1.Status(value).name.lower()


@dataclass(frozen=True)
class DatasetMeta:
    """What every loader and workload needs to know about the data set.

    Attributes:
        issues: Number of issues (ids 1..issues, in every tracker).
        seed: The generator's seed.
        components: Component paths, parents before children (``A>B>C``).
        component_ids: bugless component id of each path.
        users: User names (``user0001``..).
        statuses: Status names; the first three are open.
        priorities: ``P0``..``P4``, most urgent first.
        types: Issue type names.
        list_component: The component (exact, no subtree) whose open issues
            the list workload shows, sorted by priority.
        list_open_issues: How many open issues it has.
        search_word: A word occurring in about 1% of issues.
        search_issues: In how many issues it occurs.
        long_issue: The issue carrying the extra comments.
    """

    issues: int
    seed: int
    components: list[str]
    component_ids: dict[str, int]
    users: list[str]
    statuses: list[str]
    priorities: list[str]
    types: list[str]
    list_component: str
    list_open_issues: int
    search_word: str
    search_issues: int
    long_issue: int

    def save(self, path: Path) -> None:
        """Write as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> DatasetMeta:
        """Read what :meth:`save` wrote."""
        return cls(**json.loads(path.read_text()))


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def long_comments(words: list[str], issue_id: int, after: datetime) -> list[dict[str, Any]]:
    """The extra comments of the long issue (deterministic), one hour apart."""
    rng = random.Random(issue_id)
    return [
        {
            "at": (after + timedelta(hours=n + 1)).timestamp(),
            "author": data.user_id(rng.randint(1, 50)),
            "comment": " ".join(rng.choice(words[:3000]) for _ in range(rng.randint(20, 60))),
            "status": "",
        }
        for n in range(LONG_ISSUE_COMMENTS)
    ]


def _issue_record(row: tuple[Any, ...]) -> dict[str, Any]:
    s = data.StagedIssue(**dict(zip(data.STAGE_COLUMNS, row, strict=True)))
    changes: list[dict[str, Any]] = []
    if s.e2_at is not None:
        changes.append(
            {
                "at": _epoch(s.e2_at),
                "author": s.e2_author,
                "comment": s.e2_comment,
                "status": status_name(s.e2_status) if s.e2_status else "",
            }
        )
    if s.e3_at is not None:
        changes.append(
            {"at": _epoch(s.e3_at), "author": s.e3_author, "comment": s.e3_comment, "status": ""}
        )
    return {
        "id": s.id,
        "title": s.title,
        "description": s.description,
        "reporter": s.reporter,
        "assignee": s.assignee,
        "cc": list(s.cc),
        "priority": v1.Priority(s.priority).name,
        "type": v1.IssueType(s.type).name.lower(),
        "component_id": s.component_id,
        "status": status_name(s.status1),
        "final_status": status_name(s.status),
        "created": _epoch(s.created_at),
        "modified": _epoch(s.modified_at),
        "changes": changes,
    }


_WORD = re.compile(r"[a-z]+")


def export(
    out_dir: Path,
    *,
    issues: int,
    seed: int,
    words: list[str],
    component_ids: dict[str, int],
) -> DatasetMeta:
    """Draw the issues again and write ``issues.jsonl`` and ``meta.json``.

    ``words`` and ``component_ids`` are what the bugless seeder used (its
    ``bench_meta`` schema holds them), so ids, texts and components agree.
    """
    specs = data.component_tree(seed)
    path_of = {component_ids[s.path]: s.path for s in specs}
    generator = data.IssueGenerator(
        seed, issues, words, [component_ids[s.path] for s in specs], [s.weight for s in specs]
    )
    long_issue = max(1, issues // 2)
    occurrences: Counter[str] = Counter()
    open_by_component: Counter[str] = Counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "issues.jsonl").open("w") as out:
        for first in range(1, issues + 1, 10_000):
            for row in generator.chunk(first, min(first + 9_999, issues)):
                record = _issue_record(row)
                record["component"] = path_of[record.pop("component_id")]
                if record["id"] == long_issue:
                    record["changes"] += long_comments(
                        words, long_issue, datetime.fromtimestamp(record["modified"]).astimezone()
                    )
                text = " ".join(
                    [record["title"], record["description"]]
                    + [c["comment"] for c in record["changes"]]
                ).lower()
                occurrences.update(set(_WORD.findall(text)))
                if record["final_status"] in OPEN_STATUSES:
                    open_by_component[record["component"]] += 1
                out.write(json.dumps(record) + "\n")
    target = SEARCH_SHARE * issues
    candidates = [w for w in words[100:2000] if occurrences[w]]
    search_word = min(candidates, key=lambda w: (abs(occurrences[w] - target), w))
    list_component, list_open = open_by_component.most_common(1)[0]
    meta = DatasetMeta(
        issues=issues,
        seed=seed,
        components=[s.path for s in specs],
        component_ids={s.path: component_ids[s.path] for s in specs},
        users=[data.user_id(k) for k in range(1, data.USERS + 1)],
        statuses=[status_name(v) for v in range(1, 11)],
        priorities=[v1.Priority(v).name for v in range(1, 6)],
        types=[v1.IssueType(v).name.lower() for v in range(1, 8)],
        list_component=list_component,
        list_open_issues=list_open,
        search_word=search_word,
        search_issues=occurrences[search_word],
        long_issue=long_issue,
    )
    meta.save(out_dir / "meta.json")
    return meta


def long_comments_of(dataset_dir: Path, issue_id: int) -> list[str]:
    """The comments of issue ``issue_id`` in the exported data set, in order."""
    with (dataset_dir / "issues.jsonl").open() as lines:
        for line in lines:
            record = json.loads(line)
            if record["id"] == issue_id:
                return [c["comment"] for c in record["changes"] if c["comment"]]
    msg = f"issue {issue_id} is not in {dataset_dir}"
    raise LookupError(msg)
