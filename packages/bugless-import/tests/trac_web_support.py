"""What the Trac reference tests share: the Trac's base URL and its importer's name.

test_trac_references and test_trac_attachment_links both import a Trac at
``BASE`` under the name ``trac32`` and read the result in the real web app
(conftest's ``web``, which knows that Trac as an imported source). They live
here so no test module imports another (a moved test module must not break
its neighbours' collection).
"""

from __future__ import annotations

from bugless_import.sources.trac import TracImporter

BASE = "https://trac32.example.org/rocket"


class _Trac32(TracImporter):
    """Trac under a name of its own: the session's other Trac tests own ``trac:1``..."""

    name = "trac32"
