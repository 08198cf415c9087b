"""``CheckViewers``: which of the people named on an issue cannot view its component.

Whoever assigns or CCs someone who cannot view the component hears of it
(the web's warning, the CLI's): that person would neither open the issue nor
get mail about it. The rule is the one every read applies,
:func:`~bugless_model_postgres._convert.caller_role` on the component's
effective ACL (own and inherited entries, users *and* groups), evaluated for
each person on one read of the row.

The caller learns no more than it may: it must view the component itself
(else NOT_FOUND, as GetComponent), and hears only *who* cannot view it, never
which groups anyone is in or which inherited entries decide it. Who the
people are (their groups, ``admin``) is not this module's concern: the
servicer asks the Authenticator and hands over the people who can sign in.
"""

from __future__ import annotations

from collections.abc import Sequence

from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._context import component_not_found
from bugless_model_postgres._convert import caller_role, principals_of
from bugless_model_postgres._database import translated_errors
from bugless_proto import v1


class ViewerCheckCalls(BackendCalls):
    """The backend call (a mixin of :class:`~bugless_model_postgres.PostgresBackend`)."""

    async def check_viewers(
        self, request: v1.CheckViewersRequest, viewers: Sequence[v1.Caller]
    ) -> v1.CheckViewersResponse:
        """Of ``viewers``, those the component's ACL gives no role, in their order.

        Raises:
            NotFound: no such component, or the caller may not view it.
        """
        caller = request.caller or v1.Caller()
        async with translated_errors(), self._pool.acquire() as conn:
            row = await conn.fetchrow(
                cq.COMPONENT_SEEN_BY_ID, request.component_id, caller.admin, principals_of(caller)
            )
        if row is None or caller_role(caller, row["effective_acl"]) is None:
            raise component_not_found(request.component_id, "component_id")
        return v1.CheckViewersResponse(
            component_id=request.component_id,
            component_path=row["seen_path"],
            cannot_view=[
                v1.BlockedViewer(user_id=viewer.user_id, reason=v1.ViewerBlock.NO_ACCESS)
                for viewer in viewers
                if caller_role(viewer, row["effective_acl"]) is None
            ],
        )
