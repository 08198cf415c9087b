"""``/imported?id=trac:12``: the issue imported with an external id.

``bugless import`` links a reference to one of the source tracker's issues
(Trac's ``#12``) here rather than to the source, so the migrated history's
cross-references keep working once the old tracker is switched off. The
issue is found by the search the viewer could type (``externalid:"trac:12"``),
with the viewer's identity: one they may not see is not found, like any
other. Not found, the page names the id and shows the source's page for it
(``source=``, from the import) as a link to follow by hand, if it lies under
an old tracker the deployment lists (``--imported-source``): a crafted
``source=`` cannot put a link to anywhere on this site's own page, and this
route only ever redirects to ``/issues/N`` on this site, so it is no open
redirect either.

``file=<sha256>`` (a file the source's text linked, copied with the issue)
sends the viewer on to that issue's attachment with that content, or to the
issue when the attachment has since been deleted or redacted. An issue that
never had a file of that content (the import left it out: the Model refused
it, the source could not give it) is a 404 page saying so, naming the file
by the old tracker's link when that is one the deployment lists: a link in
one ticket to another ticket's file keeps leading here whether or not that
file was imported, and the issue's files without it would read as if the
link were merely stale.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get

from bugless_core.clients import call
from bugless_core.issue_references import EXTERNAL_ID, IMPORTED_PATH
from bugless_core.search import parse_query, to_structured
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Viewer
from bugless_web.display import attachment_url
from bugless_web.frontend import frontend_of, redirect, render, viewer_of

#: The longest ``source=`` URL shown (the Model keeps source URLs this short).
_MAX_SOURCE_URL = 2048
#: A file's content hash as links carry it (``file=``).
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@get(IMPORTED_PATH)
async def imported_issue(request: Request[Any, Any, Any]) -> Response[Any]:
    """A 303 to the issue imported as ``id=`` if the viewer may see it; else a 404 page."""
    viewer = await viewer_of(request)
    external_id = request.query_params.get("id", "")
    issue_id = await _issue_imported_as(request, viewer, external_id)
    if issue_id:
        sha256 = request.query_params.get("file", "")
        if sha256:
            found = await _file_of(request, viewer, issue_id, sha256)
            if found:
                return redirect(found)
            return _file_missing(request, viewer, external_id, issue_id, sha256)
        return redirect(f"/issues/{issue_id}")
    return render(
        request,
        "imported_missing.html",
        {
            "external_id": external_id,
            # Shown only beside an id the import could have written.
            "source_url": shown_source_url(
                request.query_params.get("source", ""),
                frontend_of(request).settings.imported_sources,
            )
            if EXTERNAL_ID.fullmatch(external_id)
            else "",
        },
        status_code=404,
        viewer=viewer,
    )


async def _issue_imported_as(
    request: Request[Any, Any, Any], viewer: Viewer, external_id: str
) -> int:
    """The id of the issue imported as ``external_id`` that the viewer may see; else 0."""
    if not EXTERNAL_ID.fullmatch(external_id):  # not an id the Model could hold
        return 0
    # The id is an exact match; it holds no quote or backslash (EXTERNAL_ID),
    # and the query names no people or dates, so it needs no look-up.
    structured = to_structured(
        parse_query(f'externalid:"{external_id}"'),
        me=viewer.caller.user_id,
        users={},
        today=datetime.datetime.now(datetime.UTC).date(),
    )
    found = await call(
        frontend_of(request).backends.model.search_issues,
        v1.SearchIssuesRequest(
            caller=viewer.caller,
            query=structured,
            page=v1.PageRequest(page_size=1),
            read_mask=FieldMask(paths=["title"]),
        ),
    )
    return found.issues[0].id if found.issues else 0


async def _file_of(
    request: Request[Any, Any, Any], viewer: Viewer, issue_id: int, sha256: str
) -> str:
    """Where the attachment of ``issue_id`` with content ``sha256`` is; "" if it never had one.

    One deleted or redacted since leads to the issue's files, whose history
    says what became of it.
    """
    listed = await call(
        frontend_of(request).backends.model.list_attachments,
        v1.ListAttachmentsRequest(caller=viewer.caller, issue_id=issue_id, include_deleted=True),
    )
    held = [a for a in listed.attachments if a.sha256 == sha256.lower()]
    for attachment in held:
        if not attachment.redacted and not attachment.deleted_in_version:
            return attachment_url(attachment)
    return f"/issues/{issue_id}#attachments" if held else ""


def _file_missing(
    request: Request[Any, Any, Any], viewer: Viewer, external_id: str, issue_id: int, sha256: str
) -> Response[Any]:
    """The 404 page for a file the issue imported as ``external_id`` never had."""
    source_url = shown_source_url(
        request.query_params.get("source", ""), frontend_of(request).settings.imported_sources
    )
    # The old tracker's link ends in the file's name (Trac's
    # /attachment/ticket/12/core.dump); a link elsewhere is not trusted to.
    name = urllib.parse.unquote(urllib.parse.urlsplit(source_url).path.rsplit("/", 1)[-1])
    return render(
        request,
        "imported_file_missing.html",
        {
            "external_id": external_id,
            "issue_id": issue_id,
            "name": name,
            "sha256": sha256.lower() if _SHA256.fullmatch(sha256) else "",
            "source_url": source_url,
        },
        status_code=404,
        viewer=viewer,
    )


def shown_source_url(candidate: str, sources: Sequence[str]) -> str:
    """``candidate`` if it is an http(s) URL under one of ``sources``, to show as a link; else "".

    ``sources`` are the old trackers the deployment imported from
    (:attr:`~bugless_web.settings.WebSettings.imported_sources`, each ending
    in ``/``): the page says the link is the old tracker's, so it must be
    one, not wherever a crafted ``source=`` points. Shown, never followed by
    the server: the page links it with ``rel="nofollow noopener
    noreferrer"``. Not ``javascript:`` or ``data:``, no control characters
    or spaces, no credentials (``https://trac.example.org@evil.example/``),
    no ``..`` out of a source's path.
    """
    if not candidate or len(candidate) > _MAX_SOURCE_URL:
        return ""
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in candidate):
        return ""
    parts = urllib.parse.urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    if parts.username is not None or parts.password is not None or "\\" in candidate:
        return ""
    segments = urllib.parse.unquote(parts.path).split("/")
    if "." in segments or ".." in segments:  # a browser would leave the source's path
        return ""
    where = f"{parts.scheme}://{parts.netloc.lower()}{parts.path or '/'}"
    return candidate if any(where.startswith(source) for source in sources) else ""


ROUTES = [imported_issue]
