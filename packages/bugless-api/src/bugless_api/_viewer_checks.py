"""``Issues.CheckViewers``: which of the people an issue names cannot view it.

Why an issue, and not a component and any usernames: the Model's
``CheckViewers`` judges whoever a frontend names, by groups no bot may read.
Served for any names, it would let a bot that can view a component learn,
100 names a call and without a trace, exactly who else may view it (members
of groups granted higher in the tree, whose entries it cannot read). The web
asks only after a save that named the people, which the issue's history then
shows; the API likewise answers only about the people an issue names
(assignee, verifier, CC, people in its USER custom fields) or ``@mentions``
in its title, description or comments, whom anyone reading the issue sees.
A mention of a name that is nobody's is answered as nothing, as the web
shows it as plain text. Naming someone on an issue to learn whether they can
view it is a change the issue's history keeps, as in the web.
"""

from __future__ import annotations

from bugless_api._gateway import Gateway
from bugless_core.clients import every_page
from bugless_core.errors import InvalidArgument
from bugless_core.limits import MAX_PAGE_SIZE, MAX_USER_REFERENCE_LENGTH, MAX_VIEWER_CHECK
from bugless_core.mentions import mentioned_usernames
from bugless_core.usernames import username_key
from bugless_proto import v1


def people_named(issue: v1.Issue) -> list[str]:
    """User ids the issue names, in page order, each once.

    Assignee, verifier, CC, then the values of its USER custom fields: everyone
    who would be told about the issue by being on it.
    """
    people = [issue.assignee, issue.verifier, *issue.cc]
    for value in issue.custom_fields:
        if value.type == v1.CustomFieldType.USER:
            people += value.values
    return list(dict.fromkeys(p for p in people if p))


async def _mentioned_among(
    gateway: Gateway, caller: v1.Caller, issue: v1.Issue, keys: set[str]
) -> set[str]:
    """Which of ``keys`` (username keys) the issue's texts ``@mention``, as the caller reads them.

    Its title and description first; its comments (every page of its
    history) only while some are not found there.
    """
    found = set(mentioned_usernames(issue.title, issue.description)) & keys
    if found == keys:
        return found
    async for page in every_page(
        gateway.model.list_history,
        v1.ListHistoryRequest(caller=caller, issue_id=issue.id),
        page_size=MAX_PAGE_SIZE,
    ):
        found |= set(mentioned_usernames(*(e.comment for e in page.entries))) & keys
        if found == keys:
            break
    return found


def _checked_names(message: v1.CheckIssueViewersRequest) -> list[str]:
    """The usernames asked about, each once; refuse a list the API would not pass on."""
    if message.issue_id <= 0:
        raise InvalidArgument(
            f"issue_id: the issue whose people to check, a positive id; got {message.issue_id}",
            metadata={"field": "issue_id"},
        )
    if len(message.user_ids) > MAX_VIEWER_CHECK:
        raise InvalidArgument(
            f"user_ids: at most {MAX_VIEWER_CHECK} per call, got {len(message.user_ids)}; "
            "split the list"
        )
    for index, name in enumerate(message.user_ids):
        if not name.strip() or len(name) > MAX_USER_REFERENCE_LENGTH:
            raise InvalidArgument(
                f"user_ids[{index}]: a username of 1 to {MAX_USER_REFERENCE_LENGTH} "
                f"characters, got {name[:40]!r}",
                metadata={"field": f"user_ids[{index}]"},
            )
    return list(dict.fromkeys(message.user_ids))


async def check_issue_viewers(
    gateway: Gateway, caller: v1.Caller, message: v1.CheckIssueViewersRequest
) -> v1.CheckViewersResponse:
    """Who of the people ``message`` names (all the issue names, if none) cannot view it.

    The issue is read as the caller (NOT_FOUND unless they may view it), and
    each username asked about must be one the issue names or ``@mentions``
    (its history is read only for names it does not name); the Model then
    judges them against the issue's component, at most
    :data:`~bugless_core.limits.MAX_VIEWER_CHECK` a call. Answers name people
    as the request spelled them, or by their usernames now.

    Raises:
        InvalidArgument: A bad id or list, or a username the issue does not name.
    """
    names = _checked_names(message)
    issue = await gateway.model_call(
        gateway.model.get_issue, v1.GetIssueRequest(caller=caller, issue_id=message.issue_id)
    )
    named = people_named(issue)
    spelled: dict[str, str] = {}
    if names:
        ids = await gateway.users.ids_by_username(names)
        unnamed = {username_key(n) for n in names if ids.get(username_key(n)) not in named}
        mentioned = await _mentioned_among(gateway, caller, issue, unnamed) if unnamed else set()
        for index, name in enumerate(message.user_ids):
            key = username_key(name)
            user_id = ids.get(key)
            if user_id is None and key in mentioned:
                continue  # a mention of nobody's name: plain text, as the web shows it
            if user_id is None or (user_id not in named and key not in mentioned):
                raise InvalidArgument(
                    f"user_ids[{index}]: issue {issue.id} does not name {name!r} (as assignee, "
                    "verifier, CC, in a people field or by @mention); only the people an "
                    "issue names can be checked",
                    metadata={"field": f"user_ids[{index}]", "username": name},
                )
            spelled.setdefault(user_id, name)
        wanted = list(spelled)
    else:
        wanted = named
        spelled = await gateway.users.usernames_by_id(named)
    blocked: dict[str, v1.ViewerBlock] = {}
    reply = v1.CheckViewersResponse()
    for start in range(0, max(len(wanted), 1), MAX_VIEWER_CHECK):
        request = v1.CheckViewersRequest(
            caller=caller,
            component_id=issue.component_id,
            user_ids=wanted[start : start + MAX_VIEWER_CHECK],
        )
        # A Model of the release before CheckViewers does not serve it: the
        # bot hears MethodNotServed naming the Model to upgrade (bugless_core.errors).
        reply = await gateway.model_call(gateway.model.check_viewers, request)
        blocked.update((b.user_id, b.reason) for b in reply.cannot_view)
    reply.cannot_view = [
        v1.BlockedViewer(user_id=spelled.get(user_id, user_id), reason=blocked[user_id])
        for user_id in wanted
        if user_id in blocked
    ]
    return reply
