"""``bugless model serve`` as a release without one method would serve: a newer caller's callee.

Run as ``python -m bugless_testing.older_model METHOD model serve ...``. The
Model's own servicer, subclassed to map every method but ``METHOD``, so the
server answers it as a bugless server of an earlier release answers a method
added since (UNIMPLEMENTED naming it); everything else is the real server on
the real database. One module for every test of an upgrade done out of order
(an import calling ``CheckViewers``, a web calling ``ListHotlists``): they
were copies of one script differing in the method's name.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from bugless_core.cli import main
from bugless_core.grpc import AccessTable
from bugless_core.model import runner
from bugless_core.model.servicer import ModelServicer


def servicer_without(method: str) -> type[ModelServicer]:
    """The Model's servicer without ``method`` (a ``bugless.v1.Model`` method's name).

    Raises:
        ValueError: the Model has no such method (a typo would otherwise test
            nothing: every call would be served).
    """
    if method not in ModelServicer.ACCESS:
        raise ValueError(f"bugless.v1.Model has no method {method!r}")

    class ModelWithout(ModelServicer):
        ACCESS: ClassVar[AccessTable] = {
            rpc: callers for rpc, callers in ModelServicer.ACCESS.items() if rpc != method
        }

        def __mapping__(self) -> dict[str, Any]:
            mapping = dict(super().__mapping__())
            del mapping[f"/bugless.v1.Model/{method}"]
            return mapping

    ModelWithout.__name__ = ModelWithout.__qualname__ = f"ModelWithout{method}"
    return ModelWithout


if __name__ == "__main__":
    runner.ModelServicer = servicer_without(sys.argv[1])  # type: ignore[attr-defined]
    main(sys.argv[2:])
