"""``bugless issue update``: change one issue, or many at once (ids or ``--query``).

One issue changes as one history entry at its current (or
``--expected-version``) version. Several issues (ids, or every issue a query
matches) are shown first; the change is applied once confirmed (``--yes``
for scripts), through BatchChangeIssues, each issue at the version it had
in the preview, so an issue someone changed in between is reported, not
overwritten.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from bugless_api.cli._common import (
    ID,
    ID_OR_ZERO,
    Table,
    client_options,
    emit,
    fail,
    id_or_path,
    run_with_client,
)
from bugless_api.cli._option_names import ISSUE_UPDATE_OPTIONS, in_option_terms
from bugless_api.cli._render import (
    ISSUE_HEADERS,
    ISSUE_ROW_FIELDS,
    component_paths,
    issue_detail,
    issue_row,
)
from bugless_api.cli._viewer_warnings import (
    mentioned_on,
    warn_of_hidden_people,
    warn_per_component,
)
from bugless_api.cli.custom_fields import FIELD_OPTION, field_values
from bugless_api.cli.groups import issue_group
from bugless_api.cli.issues import count_text, search_all
from bugless_core.cli import EXIT_ERROR, EXIT_USAGE
from bugless_core.viewer_warnings import people_in_fields, people_on

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: Options that change a scalar field, as (option name, client keyword).
_SCALARS = (
    ("title", "title"),
    ("status", "status"),
    ("priority", "priority"),
    ("severity", "severity"),
    ("type", "type"),
    ("assignee", "assignee"),
    ("verifier", "verifier"),
    ("parent", "parent_id"),
    ("duplicate_of", "duplicate_of_id"),
)
#: Options that add to or remove from a list field.
_LISTS = (
    "cc_add",
    "cc_remove",
    "hotlist_add",
    "hotlist_remove",
    "blocking_add",
    "blocking_remove",
    "blocked_by_add",
    "blocked_by_remove",
)


def _change_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--title", default=None, help="A new title."),
        click.option("--component", default=None, help="Move to this component (id or path)."),
        click.option("--status", default=None, help="new, assigned, accepted, fixed, ..."),
        click.option("--priority", default=None, help="P0 (most urgent) to P4."),
        click.option("--severity", default=None, help="S0 (most severe) to S4."),
        click.option("--type", default=None, help="bug, feature_request, task, ..."),
        click.option("--assignee", default=None, help="Username ('' for nobody)."),
        click.option("--verifier", default=None, help="Username ('' for nobody)."),
        click.option("--parent", type=ID_OR_ZERO, default=None, help="Parent issue id (0: none)."),
        click.option(
            "--duplicate-of",
            type=ID_OR_ZERO,
            default=None,
            help="Duplicate of this id (0: none); sets status Duplicate unless --status says.",
        ),
        click.option("--cc-add", multiple=True, help="Username to CC (repeatable)."),
        click.option("--cc-remove", multiple=True, help="Username to un-CC (repeatable)."),
        click.option("--hotlist-add", multiple=True, type=ID, help="Hotlist id (repeatable)."),
        click.option("--hotlist-remove", multiple=True, type=ID, help="Hotlist id (repeatable)."),
        click.option(
            "--blocking",
            "--blocking-add",
            "blocking_add",
            multiple=True,
            type=ID,
            help="It blocks this issue id (repeatable).",
        ),
        click.option("--blocking-remove", multiple=True, type=ID, help="Issue id (repeatable)."),
        click.option(
            "--blocked-by",
            "--blocked-by-add",
            "blocked_by_add",
            multiple=True,
            type=ID,
            help="It is blocked by this issue id (repeatable).",
        ),
        click.option("--blocked-by-remove", multiple=True, type=ID, help="Issue id (repeatable)."),
        click.option("--comment", default="", help="Comment added with the change."),
        FIELD_OPTION,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _summary(changes: dict[str, Any]) -> str:
    """The change as people read it: ``priority=P1, cc +bob``."""
    parts = [
        f"{name}={value!r}" if value == "" else f"{name}={value}"
        for name, value in changes.items()
        if name not in _LISTS and name not in ("comment", "fields") and value is not None
    ]
    parts.extend(changes["fields"])
    for name in _LISTS:
        for value in changes[name]:
            sign = "+" if name.endswith("_add") else "-"
            parts.append(f"{name.rsplit('_', 1)[0].replace('_', '-')} {sign}{value}")
    if changes["comment"]:
        parts.append("a comment")
    return ", ".join(parts) or "nothing"


@issue_group.command("update")
@click.argument("issue_ids", type=ID, nargs=-1)
@click.option("--query", default=None, help="Change every issue matching this query (shown first).")
@click.option("--yes", is_flag=True, help="Change several issues without asking.")
@click.option(
    "--expected-version",
    metavar="N",
    type=ID,
    default=None,
    help="One issue: fail (exit 4) unless it is at this version; default: its current one.",
)
@_change_options
@client_options
def update_command(
    *,
    issue_ids: tuple[int, ...],
    query: str | None,
    yes: bool,
    expected_version: int | None,
    as_json: bool,
    api: str | None,
    cert: str | None,
    key: str | None,
    ca: str | None,
    time_zone: str | None,
    **changes: Any,
) -> None:
    """Change fields and relations of ISSUE_IDS, or of every issue --query matches.

    One issue changes atomically, as one history entry. Several issues are
    listed with the change first; it is applied when you confirm (--yes in
    scripts; without it a non-interactive run changes nothing and exits 2).
    Relations: --parent, --duplicate-of, --blocking, --blocked-by (0 or the
    -remove forms undo them).

    A "warning:" line on standard error names whom --assignee, --verifier,
    --cc-add or a --field of a user field named (or, with --component, anyone
    on the issue) who cannot view the component of the issues changed (one
    check per component): they will not see them or get mail about them. The
    output and the exit status are the change's.
    """
    if bool(issue_ids) == (query is not None):
        raise click.UsageError("give ISSUE_IDS or --query (one of them)")
    if expected_version is not None and len(issue_ids) != 1:
        raise click.UsageError("--expected-version needs exactly one ISSUE_ID")
    options = {"api": api, "cert": cert, "key": key, "ca": ca, "time_zone": time_zone}
    if len(issue_ids) == 1:
        result = run_with_client(
            options,
            lambda client: _update_one(client, issue_ids[0], expected_version, changes),
            option_names=ISSUE_UPDATE_OPTIONS,
        )
        emit(result, as_json=as_json)
        return
    outcome = run_with_client(
        options,
        lambda client: _update_many(client, issue_ids, query, changes, yes=yes, as_json=as_json),
        option_names=ISSUE_UPDATE_OPTIONS,
    )
    assert isinstance(outcome, _Outcome)
    emit(outcome.table, as_json=as_json)
    if outcome.failed:
        fail(f"{outcome.failed} of {outcome.attempted} issues were not changed", EXIT_ERROR)


async def _component_id(client: BuglessClient, ref: str | None) -> int | None:
    if ref is None:
        return None
    found = id_or_path(ref)
    return found if isinstance(found, int) else (await client.get_component(found)).id


def _client_keywords(changes: dict[str, Any], component_id: int | None) -> dict[str, Any]:
    keywords: dict[str, Any] = {kw: changes[name] for name, kw in _SCALARS}
    keywords.update({name: changes[name] for name in _LISTS})
    keywords["component_id"] = component_id
    return keywords


async def _update_one(
    client: BuglessClient, issue_id: int, expected_version: int | None, changes: dict[str, Any]
) -> object:
    from bugless_api.client._custom_values import field_specs  # noqa: PLC0415

    component_id = await _component_id(client, changes["component"])
    reply = await client.update_issue(
        issue_id,
        expected_version=expected_version,
        comment=changes["comment"],
        fields=field_specs(changes["fields"]),
        **_client_keywords(changes, component_id),
    )
    assert reply.issue is not None
    # A move is judged afresh for everyone on the issue; otherwise who it named.
    named = [changes["assignee"] or "", changes["verifier"] or "", *changes["cc_add"]]
    named += people_in_fields(reply.issue, field_specs(changes["fields"]))
    people = people_on(reply.issue) if component_id is not None else named
    texts = (changes["title"] or "", changes["comment"])
    await warn_of_hidden_people(client, reply.issue, people, texts=texts)
    return issue_detail(reply.issue, await component_paths(client))


#: What a bulk update reads of each issue it changes (see :func:`_update_many`).
_CHANGED_FIELDS = (*ISSUE_ROW_FIELDS, "version")


class _Outcome:
    def __init__(self, table: Table, attempted: int, failed: int) -> None:
        self.table, self.attempted, self.failed = table, attempted, failed


async def _update_many(
    client: BuglessClient,
    issue_ids: tuple[int, ...],
    query: str | None,
    changes: dict[str, Any],
    *,
    yes: bool,
    as_json: bool,
) -> _Outcome:
    from bugless_core import limits  # noqa: PLC0415

    component_id = await _component_id(client, changes["component"])
    delta = client.delta(**_client_keywords(changes, component_id))
    paths = await component_paths(client)
    # The preview table's columns, the components the custom fields are
    # checked against (in ISSUE_ROW_FIELDS) and each issue's version, the
    # change's precondition; a --json preview prints whole issues.
    mask = None if as_json and not yes else _CHANGED_FIELDS
    if query is not None:
        issues, total, lower_bound = await search_all(client, query, None, read_mask=mask)
        matched = count_text(total, lower_bound)
    else:
        ids = list(dict.fromkeys(issue_ids))
        issues = list((await client.batch_get_issues(ids, read_mask=mask)).issues)
        matched = str(len(issues))
    targets = [component_id] if component_id else [issue.component_id for issue in issues]
    delta.custom_fields_set = await field_values(client, targets, changes["fields"])
    summary = _summary(changes)
    preview = Table(
        headers=ISSUE_HEADERS,
        rows=[issue_row(issue, paths) for issue in issues],
        data={"issues": issues, "change": summary, "applied": False},
        footer=f"{len(issues)} issues (of {matched} matching): {summary}",
    )
    if not issues:
        return _Outcome(preview, 0, 0)
    if not yes:
        emit(preview, as_json=as_json)
        if not sys.stdin.isatty():
            fail(f"nothing changed: pass --yes to change these {len(issues)} issues", EXIT_USAGE)
        if not click.confirm(f"Change these {len(issues)} issues?", err=True):
            fail("nothing changed", EXIT_USAGE)
    results: list[v1.BatchChangeResult] = []
    for start in range(0, len(issues), limits.MAX_BATCH_CHANGE):
        chunk = issues[start : start + limits.MAX_BATCH_CHANGE]
        reply = await client.batch_change_issues(
            [(issue.id, issue.version) for issue in chunk], delta, comment=changes["comment"]
        )
        results.extend(reply.results)
    await _warn_after_bulk_update(client, results, changes, moved=component_id is not None)
    failed = [result for result in results if result.code != 0]
    table = Table(
        headers=["id", "result", "version", "title"],
        rows=[
            [
                r.issue_id,
                "changed"
                if r.code == 0
                else f"not changed: {in_option_terms(r.message, None, ISSUE_UPDATE_OPTIONS)}",
                r.issue.version if r.issue is not None else "",
                r.issue.title if r.issue is not None else "",
            ]
            for r in results
        ],
        data={"results": results, "change": summary, "applied": True},
        footer=f"changed {len(results) - len(failed)} of {len(results)} issues: {summary}",
    )
    return _Outcome(table, len(results), len(failed))


async def _warn_after_bulk_update(
    client: BuglessClient,
    results: Sequence[v1.BatchChangeResult],
    changes: dict[str, Any],
    *,
    moved: bool,
) -> None:
    """Warn of whom the change named who cannot view the issues it changed, per component.

    As after one issue: the assignee, verifier, CC and user fields it set,
    or, after a move, everyone on each moved issue, and whom its comment or
    title newly ``@mentions`` on each issue; one warning per component
    of the changed issues (as the web's bulk bar), and one call for it when
    the change named the same people on each (each person is asked about on
    the first issue naming them, as the API asks), however many issues.
    """
    from bugless_api.client._custom_values import field_specs  # noqa: PLC0415

    set_fields = field_specs(changes["fields"])
    texts = (changes["title"] or "", changes["comment"])
    named: dict[int, dict[int, list[str]]] = {}
    for result in results:
        issue = result.issue
        if result.code != 0 or issue is None:
            continue
        if moved:
            people = people_on(issue)
        else:
            people = [changes["assignee"] or "", changes["verifier"] or "", *changes["cc_add"]]
            people += people_in_fields(issue, set_fields)
        people += mentioned_on(issue, texts)
        named.setdefault(issue.component_id, {})[result.issue_id] = people
    await warn_per_component(client, named)
