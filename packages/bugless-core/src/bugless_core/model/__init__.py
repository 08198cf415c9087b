"""The Model service: backend contract, request checks and the gRPC servicer.

The names below are imported on first use (PEP 562, :mod:`bugless_core.lazy`):
a frontend that needs only the backend contract (``Capability``, through
:mod:`bugless_core.model.backend`) imports this package on the way, and must
not pay for the servicer and its request checks, which only the Model serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute

if TYPE_CHECKING:
    from bugless_core.model.backend import (
        Capability,
        ChangeListener,
        ModelBackend,
    )
    from bugless_core.model.servicer import ModelServicer
    from bugless_core.model.settings import ModelSettings

#: Public name -> the module defining it.
_LAZY = {
    "Capability": "bugless_core.model.backend",
    "ChangeListener": "bugless_core.model.backend",
    "ModelBackend": "bugless_core.model.backend",
    "ModelSettings": "bugless_core.model.settings",
    "ModelServicer": "bugless_core.model.servicer",
}

__all__ = ["Capability", "ChangeListener", "ModelBackend", "ModelServicer", "ModelSettings"]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
