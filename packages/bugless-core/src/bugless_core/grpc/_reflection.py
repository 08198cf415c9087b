"""Server reflection over every service a bugless server runs.

grpclib's reflection service looks descriptors up in one pool, but a bugless
server's descriptors live in two: the bugless.v1 files in
``bugless_proto.DESCRIPTOR_POOL``, and grpclib's own health and reflection
files in protobuf's default pool. Reflection therefore gets a view that asks
each pool in turn, so that ``grpcurl describe`` works for the health service
too, without copying files from one pool into another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf import descriptor_pool as protobuf_descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from grpclib.reflection.service import ServerReflection

from bugless_core._compat.grpclib import IServable

_T = TypeVar("_T")


class _ChainedDescriptorPool:
    """The lookups grpclib's reflection service makes, tried in several pools.

    Method names are those of ``DescriptorPool`` because reflection calls them.
    """

    def __init__(self, pools: Sequence[DescriptorPool]) -> None:
        self._pools = pools

    def FindFileByName(self, name: str) -> FileDescriptor:  # noqa: N802
        """Return the file called ``name`` (``bugless/v1/model.proto``)."""
        return self._first(lambda pool: pool.FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:  # noqa: N802
        """Return the file defining ``symbol`` (``bugless.v1.Model``)."""
        try:
            return self._first(lambda pool: pool.FindFileContainingSymbol(symbol))
        except KeyError:
            # grpcurl asks for methods as "pkg.Service.Method"; the pool only
            # indexes services, so answer with the service's file.
            service, _, method = symbol.rpartition(".")
            if not service:
                raise
            descriptor = self._first(lambda pool: pool.FindServiceByName(service))
            if method not in descriptor.methods_by_name:
                raise
            return descriptor.file

    def FindMessageTypeByName(self, name: str) -> Descriptor:  # noqa: N802
        """Return the message called ``name`` (``bugless.v1.Issue``)."""
        return self._first(lambda pool: pool.FindMessageTypeByName(name))

    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:  # noqa: N802
        """Return extension ``number`` of ``message``, from the message's own pool."""
        return message.file.pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:  # noqa: N802
        """Return every extension of ``message``, from the message's own pool."""
        return list(message.file.pool.FindAllExtensions(message))

    def _first(self, lookup: Callable[[DescriptorPool], _T]) -> _T:
        for pool in self._pools[:-1]:
            try:
                return lookup(pool)
            except KeyError:
                continue
        return lookup(self._pools[-1])


def with_reflection(
    servables: Sequence[IServable], descriptor_pool: DescriptorPool
) -> list[IServable]:
    """Return ``servables`` plus reflection (v1 and v1alpha) describing all of them.

    Args:
        servables: Every service the server runs, health included.
        descriptor_pool: Pool holding the descriptors of the application's
            services; protobuf's default pool is consulted after it.
    """
    pool = _ChainedDescriptorPool([descriptor_pool, protobuf_descriptor_pool.Default()])
    return ServerReflection.extend(servables, pool=pool)
