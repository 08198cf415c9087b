"""Following from the command line: stars, mutes and subscriptions.

``bugless issue star|unstar|mute|unmute ISSUE_IDS``, ``bugless component
subscribe|unsubscribe ID_OR_PATH``, ``bugless saved-search
subscribe|unsubscribe ID``. What a person follows is theirs: none of these
changes an issue (no history entry, no new version), and each is idempotent,
so a script may run it again.

Several issue ids are checked first, in one read: when any of them does not
exist or is not visible to you, the command exits 3 naming them and changes
nothing (a mistyped id among five stars none, and the run can be repeated
once fixed). Taking back what you hold needs no sight of the issue:
``unstar`` removes your star from any id (a hidden one's row says "not
starred now", whether or not it exists), ``unmute`` lifts any mute of yours.
Each issue is then starred (muted, ...) in turn, and the table says per id
what happened (``starred``, ``already starred``). An issue that fails after
the check (deleted or hidden in between) is reported on its row, the others
are still done, and the command exits with that failure's code (3 not
found, 1 otherwise), as a bulk ``issue update`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from bugless_api.cli._common import (
    EXIT_OK,
    ID,
    Table,
    Text,
    client_options,
    command,
    emit,
    fail,
    id_or_path,
    run_with_client,
)
from bugless_api.cli.groups import component_group, issue_group, saved_search_group
from bugless_api.cli.saved_searches import find_saved_search
from bugless_core.cli import EXIT_ERROR, exit_status_of

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_core.errors import BuglessError
    from bugless_proto import v1

#: Shown for what you follow but may no longer see (its title, path or name is not yours).
NOT_VISIBLE = "(not visible to you)"


@dataclass(frozen=True)
class _Action:
    """One of the four per-issue commands, in the words its table uses."""

    flag: str  # the result field: "starred" or "muted"
    on: bool  # star/mute (True) or unstar/unmute (False)

    @property
    def done(self) -> str:
        """What a row says when the call changed something: ``starred``, ``unmuted``."""
        return self.flag if self.on else f"un{self.flag}"

    @property
    def kept(self) -> str:
        """What a row says when it already was so: ``already starred``, ``was not muted``."""
        return f"already {self.flag}" if self.on else f"was not {self.flag}"


@dataclass
class _Row:
    issue_id: int
    title: str
    result: str
    state: bool | None  # None: unknown (the call failed)
    star_count: int | None = None
    error: BuglessError | None = None


@dataclass
class _Outcome:
    action: _Action
    rows: list[_Row]

    @property
    def failed(self) -> list[_Row]:
        return [row for row in self.rows if row.error is not None]

    @property
    def exit_code(self) -> int:
        """0; else the failures' code when they agree (3: all not found), else 1."""
        codes = {
            exit_status_of(row.error, answered_by_service=True)
            for row in self.failed
            if row.error is not None
        }
        if not codes:
            return EXIT_OK
        return codes.pop() if len(codes) == 1 else EXIT_ERROR

    def table(self) -> Table:
        counted = self.action.flag == "starred"
        headers = ["id", "result", *(["stars"] if counted else []), "title"]
        data: list[dict[str, object]] = []
        rows: list[list[object]] = []
        for row in self.rows:
            item: dict[str, object] = {
                "issue_id": row.issue_id,
                "title": row.title,
                "result": row.result,
                self.action.flag: row.state,
                "error": row.error.message if row.error is not None else "",
            }
            if counted:
                item["star_count"] = row.star_count
            data.append(item)
            stars = [row.star_count if row.star_count is not None else ""] if counted else []
            rows.append([row.issue_id, row.result, *stars, row.title])
        done = len(self.rows) - len(self.failed)
        return Table(
            headers=headers,
            rows=rows,
            data={"results": data},
            footer=f"{self.action.done} {done} of {len(self.rows)}" if self.failed else "",
        )


async def visible_issues(client: BuglessClient, issue_ids: Sequence[int]) -> dict[int, v1.Issue]:
    """The issues among ``issue_ids`` you may see (title and star only), by id."""
    from bugless_core import limits  # noqa: PLC0415

    found: dict[int, v1.Issue] = {}
    for start in range(0, len(issue_ids), limits.MAX_BATCH_GET):
        chunk = issue_ids[start : start + limits.MAX_BATCH_GET]
        reply = await client.batch_get_issues(chunk, read_mask=("title", "starred"))
        found.update((issue.id, issue) for issue in reply.issues)
    return found


def _refuse_missing(missing: Sequence[int], action: _Action) -> None:
    from bugless_core.errors import NotFound  # noqa: PLC0415

    if missing:
        names = ", ".join(str(issue_id) for issue_id in missing)
        noun = "issue" if len(missing) == 1 else "issues"
        msg = f"{noun} {names} not found (or not visible to you); nothing was {action.done}"
        raise NotFound(msg, metadata={"issue_ids": names})


async def _each(
    issue_ids: Sequence[int], attempt: Callable[[int], Awaitable[_Row]], title: dict[int, str]
) -> list[_Row]:
    """Run ``attempt`` per id in turn; a failure becomes that id's row, the rest go on."""
    from bugless_core.errors import BuglessError  # noqa: PLC0415

    rows: list[_Row] = []
    for issue_id in issue_ids:
        try:
            rows.append(await attempt(issue_id))
        except BuglessError as exc:
            failure = f"failed: {exc.message}"
            rows.append(_Row(issue_id, title.get(issue_id, ""), failure, None, error=exc))
    return rows


#: The row of an unstarred issue you may not see: the Model answers alike whether
#: you had starred it, and whether it exists (it tells nothing of a hidden issue).
UNSTARRED_HIDDEN = "not starred now"


async def _star(client: BuglessClient, issue_ids: Sequence[int], starred: bool) -> _Outcome:
    action = _Action("starred", starred)
    visible = await visible_issues(client, issue_ids)
    # A star outlives the access it was made with; removing it needs none (as the
    # Model has it), and the Model cannot say which hidden ids you had starred.
    if starred:
        _refuse_missing([i for i in issue_ids if i not in visible], action)
    titles = {i: visible[i].title if i in visible else NOT_VISIBLE for i in issue_ids}

    async def attempt(issue_id: int) -> _Row:
        reply = await client.star_issue(issue_id, starred=starred)
        if issue_id not in visible:
            return _Row(issue_id, titles[issue_id], UNSTARRED_HIDDEN, reply.starred)
        before = visible[issue_id].starred
        result = action.kept if before == starred else action.done
        return _Row(issue_id, titles[issue_id], result, reply.starred, reply.star_count)

    return _Outcome(action, await _each(issue_ids, attempt, titles))


async def _mute(client: BuglessClient, issue_ids: Sequence[int], muted: bool) -> _Outcome:
    action = _Action("muted", muted)
    already = set((await client.get_notification_settings()).muted_issue_ids)
    visible = await visible_issues(client, issue_ids)
    # A mute outlives the access it was made with; lifting it needs none (as the Model has it).
    tolerated = set() if muted else already
    _refuse_missing([i for i in issue_ids if i not in visible and i not in tolerated], action)
    titles = {i: visible[i].title if i in visible else NOT_VISIBLE for i in issue_ids}

    async def attempt(issue_id: int) -> _Row:
        settings = await client.mute_issue(issue_id, muted=muted)
        result = action.kept if (issue_id in already) == muted else action.done
        return _Row(issue_id, titles[issue_id], result, issue_id in settings.muted_issue_ids)

    return _Outcome(action, await _each(issue_ids, attempt, titles))


def _run_per_issue(
    params: dict[str, Any],
    work: Callable[[BuglessClient, Sequence[int], bool], Coroutine[Any, Any, _Outcome]],
    on: bool,
) -> None:
    """Run ``work`` on the given ids, print the table, exit non-zero if a row failed."""
    as_json = params.pop("as_json")
    issue_ids = list(dict.fromkeys(params.pop("issue_ids")))
    outcome = run_with_client(params, lambda client: work(client, issue_ids, on))
    assert isinstance(outcome, _Outcome)
    emit(outcome.table(), as_json=as_json)
    if outcome.failed:
        failed, action = len(outcome.failed), outcome.action
        fail(f"{failed} of {len(outcome.rows)} issues were not {action.done}", outcome.exit_code)


_ISSUE_IDS = click.argument("issue_ids", type=ID, nargs=-1, required=True)


@issue_group.command("star")
@_ISSUE_IDS
@client_options
def star_command(**params: Any) -> None:
    """Star issues: be notified of their changes, and find them with is:starred.

    Your star is yours: the issue gets no history entry and no new version,
    only its star count changes. Every id is checked first: one that does not
    exist or that you may not see exits 3 and nothing is starred.
    """
    _run_per_issue(params, _star, True)


@issue_group.command("unstar")
@_ISSUE_IDS
@client_options
def unstar_command(**params: Any) -> None:
    """Remove your star from issues (one not starred is reported, not an error).

    Your star can be removed from an issue you can no longer see (it moved
    to a component closed to you). Of such an id the row says "not starred
    now": the tracker does not say whether an issue you may not see exists,
    so an id that never existed gets the same row, and changes nothing.
    """
    _run_per_issue(params, _star, False)


@issue_group.command("mute")
@_ISSUE_IDS
@client_options
def mute_command(**params: Any) -> None:
    """Mute issues: no notification about them, whatever the reason (assignee, star, ...).

    `bugless notifications show` lists what you muted. Every id is checked
    first: one that does not exist or that you may not see exits 3 and
    nothing is muted.
    """
    _run_per_issue(params, _mute, True)


@issue_group.command("unmute")
@_ISSUE_IDS
@client_options
def unmute_command(**params: Any) -> None:
    """Be notified about muted issues again (one not muted is reported, not an error).

    An issue you muted and can no longer see may still be unmuted; any
    other id that does not exist or that you may not see exits 3 and nothing
    is unmuted.
    """
    _run_per_issue(params, _mute, False)


def _component_text(component: v1.Component, include_subtree: bool) -> str:
    return f"{component.path} and its subtree" if include_subtree else component.path


async def _set_component_subscription(
    client: BuglessClient, ref: str, *, subscribed: bool, include_subtree: bool
) -> Text:
    component = await client.get_component(id_or_path(ref))
    before = {c.component_id: c for c in (await client.list_subscriptions()).components}
    had = before.get(component.id)
    after = await client.subscribe_component(
        component.id, subscribed=subscribed, include_subtree=include_subtree
    )
    now = next((c for c in after.components if c.component_id == component.id), None)
    if subscribed:
        changed = had is None or had.include_subtree != include_subtree
        was = "" if had is None else f" (was: {_component_text(component, had.include_subtree)})"
        text = (
            f"subscribed to {_component_text(component, include_subtree)}{was}"
            if changed
            else f"already subscribed to {_component_text(component, include_subtree)}"
        )
    else:
        changed = had is not None
        text = (
            f"unsubscribed from {component.path}"
            if changed
            else f"was not subscribed to {component.path}"
        )
    return Text(
        text=text,
        data={
            "component_id": component.id,
            "path": component.path,
            "subscribed": now is not None,
            "include_subtree": now is not None and now.include_subtree,
            "changed": changed,
        },
    )


@component_group.command("subscribe")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.option(
    "--subtree",
    is_flag=True,
    help="Its descendants' issues too (components added later included). Without it, "
    "a subscription with the subtree becomes one of this component alone.",
)
@client_options
@command
async def component_subscribe(client: BuglessClient, component_ref: str, subtree: bool) -> Text:
    """Be notified of changes to a component's issues (--subtree: its descendants' too).

    A component that does not exist or that you may not see exits 3 and
    changes nothing.
    """
    return await _set_component_subscription(
        client, component_ref, subscribed=True, include_subtree=subtree
    )


@component_group.command("unsubscribe")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_unsubscribe(client: BuglessClient, component_ref: str) -> Text:
    """Stop being notified of a component's issues (its subtree's too, if subscribed so)."""
    return await _set_component_subscription(
        client, component_ref, subscribed=False, include_subtree=False
    )


async def _set_saved_search_subscription(
    client: BuglessClient, saved_search_id: int, *, subscribed: bool
) -> Text:
    search = await find_saved_search(client, saved_search_id)
    had = saved_search_id in (await client.list_subscriptions()).saved_search_ids
    after = await client.subscribe_saved_search(saved_search_id, subscribed=subscribed)
    name = f"saved search {search.name!r} ({search.id})"
    if subscribed:
        text = f"already subscribed to {name}" if had else f"subscribed to {name}"
    else:
        text = f"unsubscribed from {name}" if had else f"was not subscribed to {name}"
    return Text(
        text=text,
        data={
            "saved_search_id": search.id,
            "name": search.name,
            "subscribed": saved_search_id in after.saved_search_ids,
            "changed": had != subscribed,
        },
    )


@saved_search_group.command("subscribe")
@click.argument("saved_search_id", type=ID)
@client_options
@command
async def saved_search_subscribe(client: BuglessClient, saved_search_id: int) -> Text:
    """Be notified when an issue starts or stops matching a saved search.

    Yours, or one shared with you; any other exits 3 and changes nothing.
    """
    return await _set_saved_search_subscription(client, saved_search_id, subscribed=True)


@saved_search_group.command("unsubscribe")
@click.argument("saved_search_id", type=ID)
@client_options
@command
async def saved_search_unsubscribe(client: BuglessClient, saved_search_id: int) -> Text:
    """Stop being notified about a saved search's matches."""
    return await _set_saved_search_subscription(client, saved_search_id, subscribed=False)
