"""bugless-dev: ``bugless dev`` and the one local-stack library.

The library starts PostgreSQL and every bugless service as subprocesses on one
machine, with one PKI, one environment map, race-free ports and health
probes, and stops them in order. ``bugless dev``, the tests
(:mod:`bugless_testing.stack`), the HA drill and the benchmarks all use it:

- :mod:`bugless_dev.stack`: :class:`LocalStack` and :class:`StackConfig`;
- :mod:`bugless_dev.pki`: :class:`LocalPki`, the CA and its certificates;
- :mod:`bugless_dev.processes`: :class:`ServiceProcess`, ready files, probes;
- :mod:`bugless_dev.postgres`: PostgreSQL binaries and :func:`start_postgres`.

``bugless dev`` itself is :mod:`bugless_dev.command` (with its state
directory, its lasting cluster and the demo data in private modules).

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the commands that use the local stack, PKI and PostgreSQL helpers should pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute

if TYPE_CHECKING:
    from bugless_dev.pki import CertificateFiles, LocalPki
    from bugless_dev.postgres import ThrowawayPostgres, start_postgres
    from bugless_dev.processes import ServiceFailed, ServiceProcess
    from bugless_dev.stack import LocalStack, RunningService, StackConfig

#: Public name -> the module defining it.
_LAZY = {
    "CertificateFiles": "bugless_dev.pki",
    "LocalPki": "bugless_dev.pki",
    "LocalStack": "bugless_dev.stack",
    "RunningService": "bugless_dev.stack",
    "ServiceFailed": "bugless_dev.processes",
    "ServiceProcess": "bugless_dev.processes",
    "StackConfig": "bugless_dev.stack",
    "ThrowawayPostgres": "bugless_dev.postgres",
    "start_postgres": "bugless_dev.postgres",
}

__all__ = [
    "CertificateFiles",
    "LocalPki",
    "LocalStack",
    "RunningService",
    "ServiceFailed",
    "ServiceProcess",
    "StackConfig",
    "ThrowawayPostgres",
    "start_postgres",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
