"""``bugless model serve`` as a release before the import asked ``CheckViewers``.

The Model's own servicer, subclassed with the access table of that release:
``CheckViewers`` for the frontends only, so the import identity is refused
it (PERMISSION_DENIED naming the method and the identity), as a Model of
that release refuses it; everything else is the real server on the real
database. Run as ``python previous_model.py model serve ...``.
"""

from __future__ import annotations

from typing import ClassVar

from bugless_core.cli import main
from bugless_core.grpc import AccessTable
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer


class PreviousModel(ModelServicer):
    """The servicer whose access table lets only the frontends ask CheckViewers."""

    ACCESS: ClassVar[AccessTable] = {
        **ModelServicer.ACCESS,
        "CheckViewers": frozenset({"web", "api"}),
    }


if __name__ == "__main__":
    runner.ModelServicer = PreviousModel  # type: ignore[attr-defined]
    main()
