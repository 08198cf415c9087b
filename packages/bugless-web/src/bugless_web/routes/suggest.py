"""Username suggestions for the people fields (assignee, verifier, CC, ACL entries).

A small JSON endpoint over the Authenticator's ``SuggestUsers``; ``compose.js``
fills a ``<datalist>`` from it as someone types. The fields stay plain text
inputs that take usernames, so the forms work the same without JavaScript.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.enums import MediaType

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_proto import v1
from bugless_web.frontend import frontend_of, optional_viewer

#: Suggestions returned per request (the Authenticator allows up to 50).
SUGGESTIONS = 8
#: Longest prefix looked up; longer input gets no suggestions rather than an error.
MAX_PREFIX = 100


@get("/suggest/users", cache_control=None)
async def suggest_users(request: Request[Any, Any, Any]) -> Response[Any]:
    """``[{"username", "display_name"}]`` for people whose name starts with ``?q=``.

    Answers JSON in every case, a 401 when signed out (a script cannot
    follow the sign-in redirect pages get), so the script can tell "no
    match" from "not allowed". Only signed-in people may list people: the
    directory is not public.
    """
    headers = {"cache-control": "private, no-store"}
    if await optional_viewer(request) is None:
        return Response(
            {"error": "sign in to look people up"},
            status_code=401,
            media_type=MediaType.JSON,
            headers=headers,
        )
    prefix = request.query_params.get("q", "").strip()
    if not prefix or len(prefix) > MAX_PREFIX:
        return Response([], media_type=MediaType.JSON, headers=headers)
    try:
        found = await call(
            frontend_of(request).backends.auth.suggest_users,
            v1.SuggestUsersRequest(prefix=prefix, limit=SUGGESTIONS),
        )
    except InvalidArgument as exc:
        return Response(
            {"error": exc.message}, status_code=400, media_type=MediaType.JSON, headers=headers
        )
    people = [
        {"username": u.username, "display_name": u.display_name}
        for u in found.users
        if not u.disabled
    ]
    return Response(people, media_type=MediaType.JSON, headers=headers)


ROUTES = [suggest_users]
