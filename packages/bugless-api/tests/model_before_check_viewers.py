"""``bugless model serve`` as a release before ``CheckViewers`` serves: without that method.

The Model's own servicer, subclassed to map every method but
``CheckViewers``, so the server answers it as one of an earlier release
does (UNIMPLEMENTED naming the method; releases before that answered bare
headers, see ``bugless_core.clients.method_missing``); everything else is
the real server on the real database. Run as
``python model_before_check_viewers.py model serve ...``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bugless_core.cli import main
from bugless_core.grpc import AccessTable
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer


class PreviousModel(ModelServicer):
    """The servicer without the RPC the release after it added."""

    ACCESS: ClassVar[AccessTable] = {
        rpc: callers for rpc, callers in ModelServicer.ACCESS.items() if rpc != "CheckViewers"
    }

    def __mapping__(self) -> dict[str, Any]:
        """The methods a Model of the previous release serves."""
        mapping = dict(super().__mapping__())
        del mapping["/bugless.v1.Model/CheckViewers"]
        return mapping


if __name__ == "__main__":
    runner.ModelServicer = PreviousModel  # type: ignore[attr-defined]
    main()
