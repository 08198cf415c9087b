"""``CheckViewers`` in the servicer: who the people are, from the Authenticator.

Naming someone on an issue (assignee, verifier, CC) who cannot view its
component is legal, and silent: they neither open the issue nor get mail
about it. The frontends ask the Model afterwards so that whoever named them
can be told. The judgement needs each person's groups and ``admin``
permission, which no assertion the Model holds carries (an assertion is the
*caller's*), and which the frontends may not learn; so the Model asks the
Authenticator (``GetUserGroups``, callable by the ``model`` identity only)
and hands the people who can sign in to the backend, which applies the one
ACL rule of every read. Who cannot sign in (an unknown id, a disabled user,
an unmerged placeholder) is answered here, and cannot view anything.

The request's caller must view the component (the backend's NOT_FOUND
otherwise), so the answer tells nobody more than who, of the people *they*
named, is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core import limits
from bugless_core.clients import method_missing
from bugless_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from bugless_core.model._validation import check_id, check_user_ref, require_caller
from bugless_core.model.backend import ModelBackend
from bugless_proto import v1

_log = logging.getLogger("bugless.model")

#: Asks the Authenticator for people's groups (its ``GetUserGroups``).
UserGroupsSource = Callable[[Sequence[str]], Awaitable[Sequence[v1.UserGroups]]]

_NO_AUTH = (
    "CheckViewers needs the Authenticator's view of people's groups, and this Model runs "
    "without --auth (--insecure-local): start it with --auth HOST:PORT"
)
_CANNOT_SIGN_IN = frozenset({v1.UserStanding.DISABLED, v1.UserStanding.PLACEHOLDER})


def authenticator_user_groups(auth: v1.AuthenticatorStub) -> UserGroupsSource:
    """A :data:`UserGroupsSource` calling ``auth`` (the Model's own certificate: ``model``)."""

    async def fetch(user_ids: Sequence[str]) -> Sequence[v1.UserGroups]:
        request = v1.GetUserGroupsRequest(user_ids=list(user_ids))
        return (await auth.get_user_groups(request, timeout=5.0)).users

    return fetch


def check_request(request: v1.CheckViewersRequest) -> None:
    """A caller, a component id, and 1 to MAX_VIEWER_CHECK user references."""
    require_caller(request.caller)
    check_id(request.component_id, "component_id")
    if not request.user_ids:
        raise InvalidArgument("user_ids: name at least one person to check")
    if len(request.user_ids) > limits.MAX_VIEWER_CHECK:
        raise InvalidArgument(
            f"user_ids: at most {limits.MAX_VIEWER_CHECK} per call, got "
            f"{len(request.user_ids)}; split the list"
        )
    for n, user_id in enumerate(request.user_ids):
        check_user_ref(user_id, f"user_ids[{n}]", required=True)


async def _people(source: UserGroupsSource, user_ids: Sequence[str]) -> dict[str, v1.UserGroups]:
    """The Authenticator's answer by user id; its failures as the caller should hear them."""
    try:
        answers = await source(user_ids)
    except GRPCError as exc:
        if exc.status is Status.PERMISSION_DENIED or method_missing(exc):
            # An Authenticator older than this Model (no GetUserGroups:
            # UNIMPLEMENTED, or UNKNOWN from older releases, see method_missing),
            # or one whose ACCESS table names another identity for the Model.
            _log.error("the Authenticator refused GetUserGroups: %s %s", exc.status, exc.message)
            msg = (
                f"the Authenticator cannot tell the Model people's groups ({exc.status.name}: "
                f"{exc.message}); upgrade it to a release with GetUserGroups"
            )
            raise FailedPrecondition(msg) from exc
        msg = f"the Authenticator cannot be asked who these people are: {exc.message or exc}"
        raise Unavailable(msg) from exc
    except (OSError, TimeoutError, StreamTerminatedError) as exc:
        # A refused or dropped connection, as bugless_core.clients.call_errors reads one.
        msg = f"the Authenticator cannot be reached to ask who these people are: {exc!r}"
        raise Unavailable(msg) from exc
    return {answer.user_id: answer for answer in answers}


async def check_viewers(
    backend: ModelBackend, source: UserGroupsSource | None, request: v1.CheckViewersRequest
) -> v1.CheckViewersResponse:
    """Answer ``request``: the backend for who can sign in, here for who cannot.

    Raises:
        InvalidArgument: a malformed request.
        FailedPrecondition: no Authenticator to ask (a Model without
            ``--auth``), or one without ``GetUserGroups``.
        Unavailable: the Authenticator cannot be reached.
        NotFound: the caller may not view the component (from the backend).
    """
    check_request(request)
    if source is None:
        raise FailedPrecondition(_NO_AUTH)
    wanted = list(dict.fromkeys(request.user_ids))
    people = await _people(source, wanted)
    # A placeholder merged into an account is judged as the account, whose
    # id user entries of the ACL name (an older Authenticator sends none).
    viewers = [
        v1.Caller(user_id=p.account_id or p.user_id, groups=list(p.groups), admin=p.admin)
        for p in people.values()
        if p.standing == v1.UserStanding.ACTIVE
    ]
    answer = await backend.check_viewers(request, viewers)
    no_access = {blocked.user_id for blocked in answer.cannot_view}
    cannot_view = []
    for user_id in wanted:
        person = people.get(user_id)
        if person is None or person.standing not in (v1.UserStanding.ACTIVE, *_CANNOT_SIGN_IN):
            reason = v1.ViewerBlock.UNKNOWN_USER
        elif person.standing in _CANNOT_SIGN_IN:
            reason = v1.ViewerBlock.CANNOT_SIGN_IN
        elif (person.account_id or user_id) in no_access:
            reason = v1.ViewerBlock.NO_ACCESS
        else:
            continue
        cannot_view.append(v1.BlockedViewer(user_id=user_id, reason=reason))
    answer.cannot_view = cannot_view
    return answer
