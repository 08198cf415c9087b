"""The preview tab of every Markdown text box: the server renders the draft.

Through :func:`bugless_web.markup.render_text`, the very renderer and
sanitiser the saved text goes through, with the mentions of people who exist
linked and others not, so what the preview shows is what the page will show.
A POST (the draft may be long and is not a URL) and so CSRF-checked like
every other; only signed-in people may use it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.enums import MediaType

from bugless_core.errors import InvalidArgument
from bugless_core.limits import MAX_COMMENT_LENGTH
from bugless_web.frontend import frontend_of, viewer_of
from bugless_web.markup import render_text
from bugless_web.timeline import mentioned_people

#: What the preview shows for an empty draft.
NOTHING = '<p class="muted">Nothing to preview.</p>'


@post("/preview", status_code=200)
async def preview(request: Request[Any, Any, Any]) -> Response[str]:
    """The sanitised HTML fragment for the Markdown in the ``text`` field."""
    await viewer_of(request)
    form = await request.form()
    text = str(form.get("text", "") or "")
    if len(text) > MAX_COMMENT_LENGTH:
        msg = f"text: {len(text)} characters; at most {MAX_COMMENT_LENGTH} can be previewed"
        raise InvalidArgument(msg)
    if text.strip():
        people = await mentioned_people(frontend_of(request).backends, [text])
        html = str(render_text(text, people))
    else:
        html = NOTHING
    return Response(
        html,
        media_type=MediaType.HTML,
        headers={"cache-control": "private, no-store"},
    )


ROUTES = [preview]
