"""Seams of the generated gRPC stubs that callers may build on.

:class:`UnaryUnaryInterceptor` routes every unary call of a generated stub
through one method (a retry, a trace); it relies on a private method of
betterproto2's ``ServiceStub``, which :mod:`bugless_proto._compat_betterproto2`
owns and checks.
"""

from __future__ import annotations

from bugless_proto._compat_betterproto2 import UnaryUnaryInterceptor

__all__ = ["UnaryUnaryInterceptor"]
