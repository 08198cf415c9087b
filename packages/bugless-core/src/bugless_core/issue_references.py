"""``#42``, ``b/42``, ``issue 42``: the one grammar of a reference to an issue in prose.

The web renderer links each one to ``/issues/42``. ``bugless import`` reads
the same grammar in imported text, where the number is the *source's* (Trac
ticket 42 is not bugless issue 42), and links it to the source's issue
instead, so that the web does not send it to an unrelated issue.

Not ``&#39;`` (an entity a renderer wrote), nor ``page#42`` or ``a/b/42``.
"""

from __future__ import annotations

import re

ISSUE_REFERENCE = re.compile(r"(?<![\w/&#])(?:#|b/|issue\s+#?)(\d{1,19})\b", re.IGNORECASE)
