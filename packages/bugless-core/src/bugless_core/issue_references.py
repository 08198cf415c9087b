"""``#42``, ``b/42``, ``issue 42``: the one grammar of a reference to an issue in prose.

The web renderer links each one to ``/issues/42``. ``bugless import`` reads
the same grammar in imported text, where the number is the *source's* (Trac
ticket 42 is not bugless issue 42), and links it to :func:`imported_link`
instead: the web's page that finds the issue imported with that external id,
so the link keeps working after the source tracker is switched off.

Not ``&#39;`` (an entity a renderer wrote), nor ``page#42`` or ``a/b/42``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

ISSUE_REFERENCE = re.compile(r"(?<![\w/&#])(?:#|b/|issue\s+#?)(\d{1,19})\b", re.IGNORECASE)

#: The web page that sends ``?id=<external id>`` on to the issue imported with it.
IMPORTED_PATH = "/imported"

#: What an external id looks like (the Model's ImportIssue check), and no
#: quote or backslash, so that it can be searched for as ``externalid:"..."``.
EXTERNAL_ID = re.compile(r'[a-z][a-z0-9_-]{0,31}:[^\s"\\]{1,199}')


def imported_link(external_id: str, source_url: str = "") -> str:
    """The bugless-relative link to the issue imported as ``external_id``.

    ``source_url`` (the source's page for it) rides along for the page that
    says the issue is not imported (yet): it shows it as a link, never
    redirects there.
    """
    return imported_file_link(external_id, "", source_url)


def imported_file_link(external_id: str, sha256: str, source_url: str = "") -> str:
    """The bugless-relative link to a file of the issue imported as ``external_id``.

    A file the source's text links (GitHub's pasted files) is copied as an
    attachment, whose id is only known once ImportIssue wrote it; the text
    links this instead, and the web's page sends it on to the attachment
    with that content (``file=``, its SHA-256) of that issue. ``sha256`` ""
    is :func:`imported_link`, the issue itself; ``source_url`` (where the
    source kept the file) is shown if the issue is not there.
    """
    query = {"id": external_id}
    if sha256:
        query["file"] = sha256
    if source_url:
        query["source"] = source_url
    return f"{IMPORTED_PATH}?{urlencode(query, quote_via=quote)}"
