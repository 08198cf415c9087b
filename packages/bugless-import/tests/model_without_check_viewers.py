"""``bugless model serve`` as a release without ``CheckViewers`` would serve: an import's callee.

The Model's own servicer, subclassed to map every method but
``CheckViewers``, so the server answers it as a bugless server of an
earlier release answers a method added since (UNIMPLEMENTED naming it);
everything else is the real server on the real database. Run as
``python model_without_check_viewers.py model serve ...``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bugless_core.cli import main
from bugless_core.grpc import AccessTable
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer

#: The method this Model does not serve.
MISSING = "CheckViewers"


class ModelWithoutCheckViewers(ModelServicer):
    """The servicer without :data:`MISSING`."""

    ACCESS: ClassVar[AccessTable] = {
        rpc: callers for rpc, callers in ModelServicer.ACCESS.items() if rpc != MISSING
    }

    def __mapping__(self) -> dict[str, Any]:
        """Every method but :data:`MISSING`."""
        mapping = dict(super().__mapping__())
        del mapping[f"/bugless.v1.Model/{MISSING}"]
        return mapping


if __name__ == "__main__":
    runner.ModelServicer = ModelWithoutCheckViewers  # type: ignore[attr-defined]
    main()
