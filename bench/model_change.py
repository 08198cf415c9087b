"""The Model's (Batch)ChangeIssue(s), (Batch)GetIssue(s), attachment, edit and create calls.

    python -m bench.model_change [--issues 2000] [--seconds 6] [--repeat 3] [--clients 8] \
        [--history N] [--before PATH[:PATH...]] [--before-sql SQL] [--after-sql SQL]

Starts a throwaway PostgreSQL, seeds it (:mod:`bench.seed`), and runs the
Authenticator and the Model as ``bugless ... serve`` subprocesses
(:mod:`bench._services`). With ``--before`` (the ``packages/*/src`` of an
older checkout, as a ``PYTHONPATH``), a second Model (``model-before``) runs
that code on the same database, and each round measures every call on both,
one after the other (which goes first alternates by round), so the
machine's load falls on both alike. ``--before-sql`` / ``--after-sql`` run
on the database before each measurement of that Model: a difference of the
schema rather than the code (a constraint dropped for the before side and
added again for the after side) alternates with it.

Clients call the Model straight (mutual TLS, as the API does, each call
carrying an identity assertion for ``user0042``, group ``eng``), in closed
loops in one client process (so that client ``i`` owns the same issues in
every process: no two clients change one issue):

* ``change``: ``ChangeIssue`` of one of the client's own issues (priority
  P1/P2 in turn, and a comment), at the version its last reply gave;
* ``fchange``: ``ChangeIssue`` of one of the client's own issues setting
  its status (ASSIGNED/ACCEPTED in turn) and its top-level component's
  "Found In" value (the next option each time), with a comment: the team
  workflow of a status and a custom field together;
* ``hchange``: ``fchange``'s change, and the issue put on the client's own
  hotlist or taken off it in turn: a hotlist makes ChangeIssue take the
  locked path (the issue's row lock, then several statements, the custom
  values' search rows planned by ``_custom_values.sync_rows``), where
  ``fchange`` runs in one statement;
* ``bchange``: ``BatchChangeIssues`` (atomic, so the locked path in one
  transaction) of :data:`BATCH_CHANGE` of the client's own issues, setting
  their status (ASSIGNED/ACCEPTED in turn) with a comment, each at the
  version its last reply gave; a row counts batches;
* ``move``: ``ChangeIssue`` moving one of the client's own issues to
  the first open child component, or from there to the second (so most
  moves change the top-level component: the "Found In" value, if any, goes;
  the issues stay moved, so run it apart from ``fchange``, whose field is
  the one of the issue's component at the start);
* ``get``: ``GetIssue`` of a random issue;
* ``bget``: ``BatchGetIssues`` of 6 random issues (the API's coalesced
  batches held 5-8 at 16 clients);
* ``attach``: ``UploadAttachment`` of 200 new bytes (one chunk) to one of
  the client's own issues, or ``DeleteAttachment`` of the file the last pass
  attached to it (passes over the issues alternate), each at the version its
  last reply gave; a deletion also removes the content (no other file has it);
* ``edit``: ``EditComment`` of a comment the client added to each of its
  own issues before the clock starts (new text each time), at the version
  its last reply gave;
* ``create``: ``CreateIssue`` of one issue in that child component with
  the next "Found In" option (a custom value: its search row is inserted);
* ``bcreate``: ``BatchCreateIssues`` of 4 new issues in one open child
  component (its top-level component's "Found In" field applies), as the
  API's coalescer sends one caller's creates (``bench._api_calls``); a
  row counts batches.

``--history N`` appends N comments (``HISTORY_WORDS`` words each, drawn from
a fixed list) to every issue of an open component before the rounds, in SQL
(one entry each, their joined texts' vector appended to the issue's): what an
edit of a long-discussed issue pays.

Each row prints the 1-minute load average and the CPU milliseconds each
process (the Model measured, PostgreSQL: the postmaster and its backends)
spent per request, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from bench._dataset import CUSTOM_FIELD_NAME, CUSTOM_OPTIONS
from bench._load import Call, Close, LoadResult, run_load
from bench._model_reads import model_stub, random_gets
from bench._services import BenchStack, CpuMeter, load_average
from bench.seed import SeedOptions, seed_and_verify
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

CALLER_ID = "user0042"
#: Issues per BatchGetIssues (``bget``).
BATCH = 6
#: Issues per BatchChangeIssues (``bchange``), as ``bcreate``'s batches.
BATCH_CHANGE = 4
#: Most clients a run may have: each owns the issues ``ids[i::MAX_CLIENTS]``.
MAX_CLIENTS = 64
SCENARIOS = {
    "change": "bench.model_change:model_change",
    "fchange": "bench.model_change:model_field_change",
    "hchange": "bench.model_change:model_hotlist_change",
    "bchange": "bench.model_change:model_batch_change",
    "move": "bench.model_change:model_move",
    "get": "bench.model_change:model_get",
    "bget": "bench.model_change:model_batch_get",
    "attach": "bench.model_change:model_attach",
    "edit": "bench.model_change:model_edit",
    "bcreate": "bench._api_calls:model_batch_create",
    "create": "bench.model_change:model_create",
}


# ---- scenarios (run inside the client process) ----


def _stub(params: dict[str, Any]) -> tuple[Any, v1.ModelStub, v1.Caller]:
    channel, stub = model_stub(params)
    return channel, stub, v1.Caller(user_id=CALLER_ID, groups=["eng"])


async def _own_issues(
    stub: v1.ModelStub, caller: v1.Caller, params: dict[str, Any]
) -> list[v1.Issue]:
    """The issues this client works on (every MAX_CLIENTS-th, from its index), as read now."""
    own: list[int] = params["issue_ids"][params["client"] :: MAX_CLIENTS]
    read = await stub.batch_get_issues(v1.BatchGetIssuesRequest(caller=caller, issue_ids=own))
    return list(read.issues)


async def _changes(
    params: dict[str, Any], delta: Callable[[v1.Issue, int], v1.IssueDelta], comment: str = ""
) -> tuple[Call, Close]:
    """ChangeIssue of the client's own issues in turn, each at the version its last reply gave.

    ``delta`` makes the n-th change from the issue as the last reply left it;
    ``comment`` (with n) is the change's comment, none when empty.
    """
    channel, stub, caller = _stub(params)
    issues = {i.id: i for i in await _own_issues(stub, caller, params)}
    cycle = itertools.cycle(sorted(issues))
    counter = itertools.count()

    async def call() -> None:
        issue_id, n = next(cycle), next(counter)
        issue = issues[issue_id]
        reply = await stub.change_issue(
            v1.ChangeIssueRequest(
                caller=caller,
                issue_id=issue_id,
                expected_version=issue.version,
                delta=delta(issue, n),
                comment=f"{comment} {n}" if comment else "",
            )
        )
        assert reply.issue is not None
        issues[issue_id] = reply.issue

    async def close() -> None:
        channel.close()

    return call, close


async def model_change(params: dict[str, Any]) -> tuple[Call, Close]:
    """ChangeIssue of a priority (P1 and P2 in turn) with a comment."""

    def delta(issue: v1.Issue, n: int) -> v1.IssueDelta:
        priority = v1.Priority.P1 if issue.priority != v1.Priority.P1 else v1.Priority.P2
        return v1.IssueDelta(
            fields=v1.IssueFields(priority=priority), update_mask=FieldMask(paths=["priority"])
        )

    return await _changes(params, delta, "bench change")


def _field_delta(params: dict[str, Any]) -> Callable[[v1.Issue, int], v1.IssueDelta]:
    """``fchange``'s delta: the other status and the next "Found In" option."""
    field_of = dict(zip(params["issue_ids"], params["found_in_ids"], strict=True))

    def delta(issue: v1.Issue, n: int) -> v1.IssueDelta:
        accepted = issue.status == v1.Status.ACCEPTED
        status = v1.Status.ASSIGNED if accepted else v1.Status.ACCEPTED
        return v1.IssueDelta(
            fields=v1.IssueFields(status=status),
            update_mask=FieldMask(paths=["status"]),
            custom_fields_set=[
                v1.CustomFieldValue(
                    field_id=field_of[issue.id],
                    values=[CUSTOM_OPTIONS[n % len(CUSTOM_OPTIONS)]],
                )
            ],
        )

    return delta


async def model_field_change(params: dict[str, Any]) -> tuple[Call, Close]:
    """ChangeIssue of a status and a custom field value, with a comment."""
    return await _changes(params, _field_delta(params), "bench field change")


async def model_hotlist_change(params: dict[str, Any]) -> tuple[Call, Close]:
    """``fchange``'s change, and the issue onto or off the client's hotlist (the locked path)."""
    channel, stub, caller = _stub(params)
    hotlist = await stub.create_hotlist(
        v1.CreateHotlistRequest(caller=caller, name=f"bench hchange {uuid.uuid4().hex[:12]}")
    )
    channel.close()
    field_delta = _field_delta(params)

    def delta(issue: v1.Issue, n: int) -> v1.IssueDelta:
        changed = field_delta(issue, n)
        if hotlist.id in issue.hotlist_ids:
            changed.hotlist_remove = [hotlist.id]
        else:
            changed.hotlist_add = [hotlist.id]
        return changed

    return await _changes(params, delta, "bench hotlist change")


async def model_batch_change(params: dict[str, Any]) -> tuple[Call, Close]:
    """Atomic BatchChangeIssues of :data:`BATCH_CHANGE` own issues: a status, a comment."""
    channel, stub, caller = _stub(params)
    versions = {i.id: i.version for i in await _own_issues(stub, caller, params)}
    ids = sorted(versions)
    groups = [ids[start : start + BATCH_CHANGE] for start in range(0, len(ids), BATCH_CHANGE)]
    batches = itertools.cycle(groups)
    counter = itertools.count()

    async def call() -> None:
        batch, n = next(batches), next(counter)
        status = v1.Status.ACCEPTED if n // len(groups) % 2 == 0 else v1.Status.ASSIGNED
        reply = await stub.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=caller,
                issues=[v1.IssueVersion(issue_id=i, expected_version=versions[i]) for i in batch],
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(status=status), update_mask=FieldMask(paths=["status"])
                ),
                comment=f"bench batch change {n}",
                atomic=True,
            )
        )
        for result in reply.results:
            assert result.issue is not None, result.message
            versions[result.issue_id] = result.issue.version

    async def close() -> None:
        channel.close()

    return call, close


async def model_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue of one issue with a "Found In" value (a custom value's search row)."""
    channel, stub, caller = _stub(params)
    component_id = params["component_id"]
    listed = await stub.list_custom_fields(
        v1.ListCustomFieldsRequest(caller=caller, component_id=component_id)
    )
    (field,) = [f for f in listed.custom_fields if f.name == CUSTOM_FIELD_NAME]
    counter = itertools.count()

    async def call() -> None:
        n = next(counter)
        issue = await stub.create_issue(
            v1.CreateIssueRequest(
                caller=caller,
                fields=v1.IssueFields(
                    title=f"bench create {params['client']}-{n}",
                    component_id=component_id,
                    priority=v1.Priority.P2,
                ),
                custom_fields=[
                    v1.CustomFieldValue(
                        field_id=field.id, values=[CUSTOM_OPTIONS[n % len(CUSTOM_OPTIONS)]]
                    )
                ],
            )
        )
        assert issue.id

    async def close() -> None:
        channel.close()

    return call, close


async def model_move(params: dict[str, Any]) -> tuple[Call, Close]:
    """ChangeIssue moving an issue between two components, no comment."""
    first, second = params["move_component_ids"]

    def delta(issue: v1.Issue, n: int) -> v1.IssueDelta:
        target = second if issue.component_id == first else first
        return v1.IssueDelta(
            fields=v1.IssueFields(component_id=target),
            update_mask=FieldMask(paths=["component_id"]),
        )

    return await _changes(params, delta)


async def model_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue of a random issue."""
    return random_gets(*_stub(params), params["issue_ids"], params["client"])


async def model_batch_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """BatchGetIssues of :data:`BATCH` random issues."""
    channel, stub, caller = _stub(params)
    ids: list[int] = params["issue_ids"]
    rng = random.Random(params["client"])

    async def call() -> None:
        reply = await stub.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=caller, issue_ids=rng.sample(ids, BATCH))
        )
        if reply.missing_ids:
            raise RuntimeError(f"missing {reply.missing_ids}")

    async def close() -> None:
        channel.close()

    return call, close


async def model_attach(params: dict[str, Any]) -> tuple[Call, Close]:
    """Upload to or delete from the client's own issues, at the versions the replies gave."""
    channel, stub, caller = _stub(params)
    own = await _own_issues(stub, caller, params)
    versions = {i.id: i.version for i in own}
    attached: dict[int, int] = {}
    cycle = itertools.cycle(sorted(versions))
    counter = itertools.count()

    async def parts(issue_id: int) -> AsyncIterator[v1.UploadAttachmentRequest]:
        header = v1.UploadAttachmentHeader(
            caller=caller, issue_id=issue_id, expected_version=versions[issue_id], name="b.log"
        )
        yield v1.UploadAttachmentRequest(header=header)
        yield v1.UploadAttachmentRequest(chunk=f"{next(counter)}:{issue_id}".encode().ljust(200))

    async def call() -> None:
        issue_id = next(cycle)
        attachment_id = attached.pop(issue_id, 0)
        if attachment_id:
            reply = await stub.delete_attachment(
                v1.DeleteAttachmentRequest(
                    caller=caller,
                    attachment_id=attachment_id,
                    expected_version=versions[issue_id],
                )
            )
            assert reply.issue is not None
            versions[issue_id] = reply.issue.version
            return
        uploaded = await stub.upload_attachment(parts(issue_id))
        assert uploaded.issue is not None
        assert uploaded.attachment is not None
        versions[issue_id] = uploaded.issue.version
        attached[issue_id] = uploaded.attachment.id

    async def close() -> None:
        channel.close()

    return call, close


async def model_edit(params: dict[str, Any]) -> tuple[Call, Close]:
    """EditComment of a comment the client wrote on each of its own issues."""
    channel, stub, caller = _stub(params)
    own = await _own_issues(stub, caller, params)
    versions: dict[int, int] = {}
    comments: dict[int, int] = {}
    for issue in own:  # before the clock: a comment of the caller's own to edit
        reply = await stub.change_issue(
            v1.ChangeIssueRequest(
                caller=caller,
                issue_id=issue.id,
                expected_version=issue.version,
                comment="bench comment to edit",
            )
        )
        assert reply.issue is not None
        assert reply.entry is not None
        versions[issue.id], comments[issue.id] = reply.issue.version, reply.entry.version
    cycle = itertools.cycle(sorted(versions))
    counter = itertools.count()

    async def call() -> None:
        issue_id = next(cycle)
        reply = await stub.edit_comment(
            v1.EditCommentRequest(
                caller=caller,
                issue_id=issue_id,
                expected_version=versions[issue_id],
                entry_version=comments[issue_id],
                comment=f"bench edit {next(counter)}",
            )
        )
        assert reply.issue is not None
        versions[issue_id] = reply.issue.version

    async def close() -> None:
        channel.close()

    return call, close


# ---- the run ----

#: Words per comment ``--history`` appends (random draws from ``_HISTORY_VOCABULARY``).
HISTORY_WORDS = 35
_HISTORY_TEXT = (
    "the server crashes when loading a page with a long timeout error in the stack trace "
    "null pointer exception module build fails on linux after upgrade to version memory "
    "leak thread deadlock database query slow cache invalid response from upstream retry "
    "succeeded failed again please look at this log attached connection reset by peer"
)
_HISTORY_VOCABULARY = _HISTORY_TEXT.split()
#: The comments ``$2`` (text[]) appended to issue $1 as entries, one each after its
#: version, with their vector (the texts' joined: the words a search finds).
_APPEND_HISTORY = """
WITH i AS (SELECT version FROM issues WHERE id = $1),
entries AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes)
    SELECT $1, i.version + t.n, 'user0042', now(), t.c, '[]'
      FROM i, unnest($2::text[]) WITH ORDINALITY AS t (c, n)
)
UPDATE issues SET version = version + cardinality($2::text[]),
                  comment_count = comment_count + cardinality($2::text[]),
                  comments_tsv = comments_tsv || v.tsv,
                  text_tsv = to_tsvector('english', title) || comments_tsv || v.tsv
  FROM (SELECT to_tsvector('english', array_to_string($2::text[], ' ')) AS tsv) v
 WHERE id = $1
"""


async def _append_history(url: str, ids: list[int], count: int) -> None:
    """``count`` comments more on each of ``ids`` (``--history``)."""
    rng = random.Random(count)
    conn = await asyncpg.connect(url, server_settings={"search_path": "bugless"})
    try:
        for issue_id in ids:
            texts = [
                " ".join(rng.choice(_HISTORY_VOCABULARY) for _ in range(HISTORY_WORDS))
                for _ in range(count)
            ]
            await conn.execute(_APPEND_HISTORY, issue_id, texts)
        await conn.execute("ANALYZE issue_history")
    finally:
        await conn.close()


async def _issue_ids(url: str) -> tuple[list[int], list[int], int, list[int]]:
    """Issues of open components (every caller edits them), in a fixed order; a child of one.

    With each issue, the "Found In" field of its top-level component; and
    open children of two top-level components (``move``).
    """
    conn = await asyncpg.connect(url, server_settings={"search_path": "bugless"})
    try:
        rows = await conn.fetch(
            "SELECT i.id, f.id AS found_in FROM issues i JOIN components c ON c.id = i.component_id"
            " JOIN custom_fields f ON f.component_id = c.path_ids[1]"
            " WHERE c.effective_acl = '{}'::jsonb ORDER BY i.id LIMIT 4000"
        )
        component_id = await conn.fetchval(
            "SELECT id FROM components WHERE effective_acl = '{}'::jsonb AND parent_id <> 0 "
            "ORDER BY id LIMIT 1"
        )
        children = await conn.fetch(
            "SELECT DISTINCT ON (path_ids[1]) id FROM components"
            " WHERE effective_acl = '{}'::jsonb AND parent_id <> 0 AND NOT archived"
            " ORDER BY path_ids[1], id LIMIT 2"
        )
    finally:
        await conn.close()
    return (
        [r["id"] for r in rows],
        [r["found_in"] for r in rows],
        int(component_id),
        [r["id"] for r in children],
    )


async def _execute(url: str, sql: str) -> None:
    """Run ``sql`` on the Model's database (``--before-sql`` / ``--after-sql``)."""
    conn = await asyncpg.connect(url, server_settings={"search_path": "bugless"})
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _row(label: str, call: str, clients: int, result: LoadResult, cpu: dict[str, float]) -> str:
    done = max(1, len(result.latencies))
    per = "  ".join(f"{name} {seconds * 1000 / done:.3f}" for name, seconds in cpu.items())
    return (
        f"{call:<7} {label:<7} {clients:>3} {result.rate:>8.0f} {result.percentile(50):>7.2f} "
        f"{result.errors:>4} {result.extra['load']:>5}  {per}"
    )


def run(
    issues: int,
    seconds: float,
    repeat: int,
    *,
    clients: int,
    before: str,
    only: tuple[str, ...],
    history: int = 0,
    side_sql: dict[str, str] | None = None,
) -> None:
    """Start everything, measure each call on each Model in turn, stop everything."""
    if clients > MAX_CLIENTS:
        raise SystemExit(f"--clients: at most {MAX_CLIENTS}")
    bench = BenchStack.start()
    try:
        print(f"seeding {issues:,} issues ...", flush=True)
        asyncio.run(
            seed_and_verify(
                bench.stack.model_database_url, "bugless", SeedOptions(issues=issues), check=False
            )
        )
        ids, found_in_ids, component_id, children = asyncio.run(
            _issue_ids(bench.stack.model_database_url)
        )
        if history:
            print(f"appending {history} comments to each of {len(ids)} issues ...", flush=True)
            asyncio.run(_append_history(bench.stack.model_database_url, ids, history))
        models = bench.models_before_after(before)
        pids = bench.service_pids()
        params: dict[str, Any] = {
            **bench.model_call_params(CALLER_ID, ["eng"]),
            "issue_ids": ids,
            "found_in_ids": found_in_ids,
            "caller_id": CALLER_ID,
            "component_id": component_id,
            "move_component_ids": children,
        }
        print(f"{len(ids)} issues in open components; {clients} clients in one process")
        print(f"{'call':<7} {'model':<7} {'cli':>3} {'req/s':>8} {'p50 ms':>7} {'err':>4} "
              f"{'load':>5}  CPU ms/request")  # fmt: skip
        for round_number in range(repeat):
            for call in only:
                # Alternated (ABBA...), so neither config always runs first.
                order = list(models.items())
                for label, model in order if round_number % 2 == 0 else order[::-1]:
                    name = "model" if label == "after" else "model-before"
                    if side_sql and side_sql.get(label):
                        asyncio.run(_execute(bench.stack.model_database_url, side_sql[label]))
                    meter = CpuMeter({name: pids[name], "postgres": pids["postgres"]})
                    result = run_load(
                        SCENARIOS[call],
                        {**params, "model_port": model.port},
                        concurrency=clients,
                        processes=1,
                        seconds=seconds,
                        on_start=meter.start,
                    )
                    cpu = meter.stop()
                    result.extra["load"] = float(load_average())
                    print(_row(label, call, clients, result, cpu), flush=True)
                    if result.errors:
                        print(f"    {result.errors} errors, first: {result.first_error}")
            print(f"-- end of round {round_number + 1}", flush=True)
    finally:
        bench.stop()


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--only", default="change,get,bget")
    parser.add_argument(
        "--history", type=int, default=0, help="comments to append to each issue first"
    )
    parser.add_argument(
        "--before", default="", help="PYTHONPATH of an older checkout's packages/*/src"
    )
    parser.add_argument(
        "--before-sql",
        default="",
        help="SQL run on the database before each measurement of the before Model "
        "(a schema difference that is not code, e.g. dropping a constraint)",
    )
    parser.add_argument(
        "--after-sql", default="", help="SQL run before each measurement of the Model (undoing it)"
    )
    args = parser.parse_args()
    run(
        args.issues,
        args.seconds,
        args.repeat,
        clients=args.clients,
        before=args.before,
        side_sql={"before": args.before_sql, "after": args.after_sql},
        only=tuple(args.only.split(",")),
        history=args.history,
    )


if __name__ == "__main__":
    main()
