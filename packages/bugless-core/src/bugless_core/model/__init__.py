"""The Model service: backend contract, request checks and the gRPC servicer."""

from __future__ import annotations

from bugless_core.model.backend import Capability, ChangeListener, ModelBackend, ModelSettings
from bugless_core.model.servicer import ModelServicer

__all__ = ["Capability", "ChangeListener", "ModelBackend", "ModelServicer", "ModelSettings"]
