"""``bugless model serve`` as a release before scoped assertions: it knows one ``typ``.

A Model of that release took an assertion whose header said ``typ:
bugless-assertion`` and ignored any claim it did not know, ``scp`` among
them; any other ``typ`` was invalid. Here the real server on the real
database, with the scoped type unknown to its verifier, so a scoped
assertion meets it as it would meet that release. Run as
``python model_before_scopes.py model serve ...``.
"""

from __future__ import annotations

from bugless_core import assertions
from bugless_core.cli import main

if __name__ == "__main__":
    assertions.SCOPED_ASSERTION_TYPE = "not-known-before-scopes"  # type: ignore[misc]
    main()
