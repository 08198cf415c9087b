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
"""

from __future__ import annotations

from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.postgres import ThrowawayPostgres, start_postgres
from bugless_dev.processes import ServiceFailed, ServiceProcess
from bugless_dev.stack import LocalStack, RunningService, StackConfig

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
