"""What the seeded tracker looks like: components, users, words and issues.

Everything is a pure function of a seed, so two runs build the same data set
and the benchmark can name "the subtree with ~10% of issues" or "a word in ~1%
of issues" without scanning. Distributions:

* 7 top-level components, 5 children each, 4 grandchildren per child, and a
  4th level (3 each) under two grandchildren of every first child: 224
  components. Issue shares per top-level subtree are fixed (Infra: 10%); inside
  a subtree, components get Zipf-like weights. A few components carry ACLs
  (some hide their subtree from the benchmark caller, one grants it).
* 2,000 users ``user0001`` .. ``user2000``; reporters, assignees, cc and
  comment authors are drawn with P(rank k) = ln(1 + 1/k) / ln(2001) (Zipf,
  s = 1): ``user0001`` is in ~9% of draws, ``user0010`` in ~1.3%.
* A vocabulary of pseudo-words (one distinct English stem each) with the same
  Zipf law over ranks, so the word of rank ~400 occurs in ~1% of issues; a few
  stock phrases ("connection reset by peer") occur in ~0.3% of issues each.
* 20% of issues have a value of the custom field "Found In" (defined on each
  top-level component, inherited by its subtree), each option on ~2%.
* 35% of issues are open (NEW, ASSIGNED or ACCEPTED); closed ones have a
  closing entry (FIXED, VERIFIED, WONT_FIX_*); some issues have a comment-only
  entry. Creation times are spread evenly over three years before END.
"""

from __future__ import annotations

import bisect
import math
import operator
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bugless_proto import v1

END = datetime(2025, 6, 1, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
USERS = 2000
OPEN_SHARE = 0.35
VOCABULARY_CANDIDATES = 26_000
#: The benchmark caller: an ordinary engineer in group ``eng``.
BENCH_CALLER = v1.Caller(user_id="user0042", groups=["eng"])
#: The user whose open issues the assignee query lists.
BENCH_ASSIGNEE = "user0010"
#: The top-level component whose subtree holds ~10% of issues.
TEN_PERCENT_SUBTREE = "Infra"
PHRASES = (
    "connection reset by peer",
    "null pointer exception",
    "disk quota exceeded",
    "segmentation fault in worker",
    "timeout waiting for lock",
    "permission denied on upload",
)
PHRASE_SHARE = 0.003
#: A custom field defined on every top-level component (so each issue has one
#: that applies): an enum whose value is set on CUSTOM_SHARE of the issues
#: (those whose id is a multiple of 5), the options spread evenly over them.
CUSTOM_FIELD_NAME = "Found In"
CUSTOM_OPTIONS = tuple(f"4.{n}" for n in range(10))
CUSTOM_SHARE = 0.20
#: The value the custom-field query looks for (~2% of issues).
BENCH_CUSTOM_VALUE = "4.2"

_TOP_LEVEL: tuple[tuple[str, float], ...] = (
    ("Platform", 0.30),
    ("Frontend", 0.22),
    ("Mobile", 0.15),
    ("Data", 0.15),
    ("Infra", 0.10),
    ("Security", 0.04),
    ("Tools", 0.04),
)
_CHILDREN = {
    "Platform": ("Storage", "Billing", "Auth", "Queues", "Scheduler"),
    "Frontend": ("Web", "Design System", "Editor", "Dashboards", "Accessibility"),
    "Mobile": ("Android", "iOS", "Sync", "Notifications", "Offline"),
    "Data": ("Pipelines", "Warehouse", "Privacy", "Reporting", "Ingestion"),
    "Infra": ("Kubernetes", "Networking", "Secrets", "Observability", "CI"),
    "Security": ("Incidents", "Vulnerabilities", "Audits", "Crypto", "Access"),
    "Tools": ("CLI", "IDE Plugins", "Build", "Release", "Docs"),
}
_GRANDCHILDREN = ("API", "Backend", "UI", "Ops")
_FOURTH_LEVEL = ("Alpha", "Beta", "Gamma")
_ADMIN = v1.Role.ADMIN
_VIEWER = v1.Role.VIEWER
#: Component path -> own ACL as (principal kind, name, role).
_ACLS: dict[str, tuple[tuple[str, str, v1.Role], ...]] = {
    "Security": (("group", "security", _ADMIN), ("user", "user0001", _ADMIN)),
    "Platform>Billing": (("group", "eng", _VIEWER), ("group", "billing", _ADMIN)),
    "Data>Privacy": (("group", "privacy", _ADMIN),),
    "Infra>Secrets": (("group", "sre", _ADMIN),),
}

_PRIORITIES = ((1, 0.02), (2, 0.12), (3, 0.60), (4, 0.18), (5, 0.08))
_SEVERITIES = ((1, 0.01), (2, 0.09), (3, 0.65), (4, 0.18), (5, 0.07))
_TYPES = ((1, 0.65), (2, 0.15), (3, 0.05), (4, 0.05), (5, 0.02), (6, 0.02), (7, 0.06))
_CLOSED = ((4, 0.60), (5, 0.15), (6, 0.0625), (7, 0.0625), (8, 0.0625), (9, 0.0625))
_CC_COUNTS = ((0, 0.50), (1, 0.25), (2, 0.15), (3, 0.10))


@dataclass(frozen=True)
class ComponentSpec:
    """One component to create: its path (names joined by ``>``) and ACL."""

    path: str
    weight: float
    acl: tuple[tuple[str, str, v1.Role], ...] = ()

    @property
    def name(self) -> str:
        """The last path segment."""
        return self.path.rsplit(">", 1)[-1]

    @property
    def parent_path(self) -> str:
        """The parent's path, ``""`` at the top level."""
        return self.path.rsplit(">", 1)[0] if ">" in self.path else ""

    def acl_entries(self) -> list[v1.AclEntry]:
        """The ACL as request messages."""
        return [
            v1.AclEntry(
                principal=v1.Principal(user=name) if kind == "user" else v1.Principal(group=name),
                role=role,
            )
            for kind, name, role in self.acl
        ]


def component_tree(seed: int) -> list[ComponentSpec]:
    """The components in creation order (parents first), with issue weights."""
    rng = random.Random(seed * 7 + 1)
    specs: list[ComponentSpec] = []
    for top, share in _TOP_LEVEL:
        paths = [top]
        for n, child in enumerate(_CHILDREN[top]):
            child_path = f"{top}>{child}"
            paths.append(child_path)
            for m, grandchild in enumerate(_GRANDCHILDREN):
                paths.append(f"{child_path}>{grandchild}")
                if n == 0 and m < 2:
                    paths.extend(f"{child_path}>{grandchild}>{x}" for x in _FOURTH_LEVEL)
        order = list(range(len(paths)))
        rng.shuffle(order)
        raw = [1.0 / (rank + 1) for rank in order]
        total = sum(raw)
        specs.extend(
            ComponentSpec(path, share * w / total, _ACLS.get(path, ()))
            for path, w in zip(paths, raw, strict=True)
        )
    # Parents before children: a stable sort on depth keeps sibling order.
    specs.sort(key=lambda s: s.path.count(">"))
    return specs


def user_id(rank: int) -> str:
    """The opaque id of the user of Zipf rank ``rank`` (1-based)."""
    return f"user{rank:04d}"


def vocabulary_candidates(seed: int) -> list[str]:
    """Pseudo-words; the seeder keeps those with one stem not seen before."""
    rng = random.Random(seed * 7 + 2)
    onsets = "b c d f g k l m n p r s t v z br dr gr kl pl st tr".split()  # noqa: SIM905
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "", "", "n", "r", "l", "m", "k", "x", "t"]
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < VOCABULARY_CANDIDATES:
        syllables = rng.choice((1, 2, 2, 2, 3, 3))
        word = "".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_share(rank: int, size: int) -> float:
    """P(a draw is rank ``rank``) for the Zipf law used throughout."""
    return math.log1p(1.0 / rank) / math.log(size + 1)


def _cumulative(pairs: Sequence[tuple[int, float]]) -> tuple[list[int], list[float]]:
    values, acc, total = [], [], 0.0
    for value, weight in pairs:
        total += weight
        values.append(value)
        acc.append(total)
    return values, [a / total for a in acc]


@dataclass(frozen=True)
class StagedIssue:
    """One issue as the staging table holds it (columns in this order).

    Entry 2 (``e2_*``) is a status change (``e2_status`` > 0) and/or a
    comment; entry 3 is a comment; ``None`` times mean "no such entry".
    """

    id: int
    title: str
    description: str
    reporter: str
    assignee: str
    cc: list[str]
    priority: int
    severity: int
    type: int
    component_id: int
    created_at: datetime
    status1: int
    status: int
    modified_at: datetime
    closed_at: datetime | None
    version: int
    comment_count: int
    e2_at: datetime | None
    e2_author: str
    e2_status: int
    e2_comment: str
    e3_at: datetime | None
    e3_author: str
    e3_comment: str


STAGE_COLUMNS = tuple(StagedIssue.__dataclass_fields__)
_AS_ROW = operator.attrgetter(*STAGE_COLUMNS)


class IssueGenerator:
    """Draws issues ``1..n`` deterministically from a seed, chunk by chunk."""

    def __init__(
        self,
        seed: int,
        total: int,
        words: Sequence[str],
        component_ids: Sequence[int],
        component_weights: Sequence[float],
    ) -> None:
        self._seed = seed
        self._total = total
        self._words = list(words)
        self._log_words = math.log(len(words) + 1)
        self._log_users = math.log(USERS + 1)
        self._users = [user_id(k) for k in range(1, USERS + 1)]
        acc, running = [], 0.0
        for w in component_weights:
            running += w
            acc.append(running)
        self._component_ids = list(component_ids)
        self._component_acc = [a / running for a in acc]
        self._priorities = _cumulative(_PRIORITIES)
        self._severities = _cumulative(_SEVERITIES)
        self._types = _cumulative(_TYPES)
        self._closed = _cumulative(_CLOSED)
        self._cc_counts = _cumulative(_CC_COUNTS)

    def chunk(self, first: int, last: int) -> Iterator[tuple[object, ...]]:
        """Staging rows (tuples in :data:`STAGE_COLUMNS` order) of ids first..last."""
        rng = random.Random(self._seed * 1_000_003 + first)
        for issue_id in range(first, last + 1):
            yield _AS_ROW(self._issue(rng, issue_id))

    def _pick(self, rng: random.Random, table: tuple[list[int], list[float]]) -> int:
        values, acc = table
        return values[bisect.bisect_left(acc, rng.random())]

    def _user(self, rng: random.Random) -> str:
        return self._users[min(int(math.exp(rng.random() * self._log_users)), USERS) - 1]

    def _text(self, rng: random.Random, count: int) -> str:
        words, size, log_words, rand, exp = (
            self._words,
            len(self._words),
            self._log_words,
            rng.random,
            math.exp,
        )
        return " ".join([words[min(int(exp(rand() * log_words)), size) - 1] for _ in range(count)])

    def _after(self, rng: random.Random, start: datetime, mean_days: float) -> datetime:
        room = (END - start).total_seconds()
        delay = rng.expovariate(1.0 / (mean_days * 86400.0))
        if delay >= room:
            delay = room * rng.random()
        return start + timedelta(seconds=max(delay, 1.0))

    def _issue(self, rng: random.Random, issue_id: int) -> StagedIssue:
        created = END - SPAN + SPAN * ((issue_id - 1 + rng.random()) / self._total)
        title = self._text(rng, rng.randint(4, 9)).capitalize()
        description = self._text(rng, rng.randint(12, 48))
        if rng.random() < PHRASE_SHARE * len(PHRASES):
            phrase = PHRASES[rng.randrange(len(PHRASES))]
            words = description.split(" ")
            words.insert(rng.randrange(len(words) + 1), phrase)
            description = " ".join(words)
        is_open = rng.random() < OPEN_SHARE
        assignee = self._user(rng) if rng.random() < (0.7 if is_open else 0.9) else ""
        status1 = 2 if assignee else 1
        cc = sorted({self._user(rng) for _ in range(self._pick(rng, self._cc_counts))})
        component = self._component_ids[bisect.bisect_left(self._component_acc, rng.random())]
        e2_at: datetime | None = None
        e2_status, e2_author, e2_comment = 0, "", ""
        if is_open:
            roll = rng.random()
            if roll < 0.12 and assignee:
                e2_status = 3
                e2_comment = self._text(rng, rng.randint(5, 25)) if rng.random() < 0.5 else ""
            elif roll < 0.30:
                e2_comment = self._text(rng, rng.randint(5, 25))
            if e2_status or e2_comment:
                e2_at = self._after(rng, created, 20.0)
        else:
            e2_status = self._pick(rng, self._closed)
            e2_comment = self._text(rng, rng.randint(5, 25)) if rng.random() < 0.7 else ""
            e2_at = self._after(rng, created, 20.0)
        if e2_at is not None:
            e2_author = assignee or self._user(rng)
        e3_at: datetime | None = None
        e3_author, e3_comment = "", ""
        if e2_at is not None and rng.random() < 0.15:
            e3_at = self._after(rng, e2_at, 30.0)
            e3_author = self._user(rng)
            e3_comment = self._text(rng, rng.randint(5, 25))
        status = e2_status or status1
        closed_at = e2_at if e2_status >= 4 else None
        entries = 1 + (e2_at is not None) + (e3_at is not None)
        comments = bool(description) + bool(e2_comment) + bool(e3_comment)
        return StagedIssue(
            id=issue_id,
            title=title,
            description=description,
            reporter=self._user(rng),
            assignee=assignee,
            cc=cc,
            priority=self._pick(rng, self._priorities),
            severity=self._pick(rng, self._severities),
            type=self._pick(rng, self._types),
            component_id=component,
            created_at=created,
            status1=status1,
            status=status,
            modified_at=e3_at or e2_at or created,
            closed_at=closed_at,
            version=entries,
            comment_count=comments,
            e2_at=e2_at,
            e2_author=e2_author,
            e2_status=e2_status,
            e2_comment=e2_comment,
            e3_at=e3_at,
            e3_author=e3_author,
            e3_comment=e3_comment,
        )
