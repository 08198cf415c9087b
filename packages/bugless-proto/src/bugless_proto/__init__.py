"""The bugless.v1 wire contracts.

``bugless_proto.v1`` is the betterproto2 module generated from ``proto/bugless/v1``
(messages, enums, async grpclib stubs and service bases). ``DESCRIPTOR_POOL``
holds the embedded file descriptors, which gRPC server reflection serves so that
grpcurl needs no ``.proto`` files. Importing this package also installs a
faster default look-up into betterproto2 (see :mod:`bugless_proto._speedups`).
"""

from __future__ import annotations

from bugless_proto import _speedups
from bugless_proto.__about__ import __version__
from bugless_proto.bugless import v1
from bugless_proto.google_proto_descriptor_pool import (
    default_google_proto_descriptor_pool as DESCRIPTOR_POOL,  # noqa: N812
)

_speedups.install()

__all__ = ["DESCRIPTOR_POOL", "__version__", "v1"]
