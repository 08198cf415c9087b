"""What a running replica does when its database's schema moves under it.

A service checks the applied schema version when it opens its database
(:func:`bugless_core.migrations.schema_too_new`; a schema behind its code is
refused too). While it runs, the version can still change under it, in two
ways, and they call for opposite answers (docs/upgrades.md); the Model, the
Authenticator and the notifier all answer the same:

* **Ahead of the code** (a newer release's ``migrate`` ran): the supported
  rolling upgrade. The chart's hook migrates the Model's schema while every
  old replica serves, before any new one exists, and the first new replica
  of the Authenticator or the notifier migrates its own while the old ones
  serve, so the old replicas must stay ready, or the upgrade would be an
  outage. The replica serves on and says so: a WARNING
  when it sees the new version, and the skew in a gauge, for an alert on a
  rollout that stalls (a replica that restarts now refuses to start).
* **Behind the code** (a restore of an older backup, the schema dropped, a
  deployment pointed at another database): never a supported state. Its
  statements may name tables and columns that are not there, and a restart
  would refuse it, so the replica reports itself not ready (ERROR, the
  gauge) until ``migrate`` brings the schema back to its version, then ready
  again (INFO).

:class:`SchemaSkewCheck` holds that rule; a service feeds it the version it
reads on each readiness check (:meth:`SchemaSkewCheck.read`: the ledger's
highest row, at most every couple of seconds while something probes
readiness).

The gauge has a series per component *and* schema: a process that holds
several (a test that opens replicas on several schemas) shows each, rather
than whichever checked last.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from bugless_core.migrations import applied_version

_log = logging.getLogger("bugless_core.schema_skew")
_GAUGES: dict[CollectorRegistry, Gauge] = {}


def skew_gauge(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """``bugless_schema_version_skew{component,schema}`` on ``registry`` (made once for each)."""
    gauge = _GAUGES.get(registry)
    if gauge is None:
        gauge = _GAUGES[registry] = Gauge(
            "bugless_schema_version_skew",
            "The database's applied schema version minus the newest this replica's code "
            "knows, as its last readiness check read it: 0 matched; above 0 a newer release "
            "migrated the database (serving on, a rollout in progress: upgrade the replica); "
            "below 0 the schema is older than the code (not ready until migrated).",
            ["component", "schema"],
            registry=registry,
        )
    return gauge


class SchemaSkewCheck:
    """One replica's view of its database's schema version against its code's (see the module).

    Args:
        component: The package whose schema it is (``bugless-model-postgres``),
            for messages and the gauge's label.
        known: The newest version this code ships.
        schema: The database schema whose ledger is read (the gauge's
            other label).
        registry: Where the gauge goes (the process registry, which a
            service's ``/metrics`` serves, unless a test has its own).

    Attributes:
        found: The version the last check read (``known`` until one did).
    """

    def __init__(
        self, component: str, known: int, *, schema: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.component = component
        self.known = known
        self.schema = schema
        self.found = known
        self._gauge = skew_gauge(registry).labels(component, schema)
        self._gauge.set(0)

    async def read(self, conn: Any) -> bool:
        """:meth:`observe` the version the schema's ledger holds now, read on ``conn``.

        Raises:
            Exception: whatever the driver raises when the database does not
                answer (a readiness check reads that as not ready).
        """
        return self.observe(await applied_version(conn, self.schema))

    async def ready(self, pool: Any) -> bool:
        """A readiness check: whether the database behind ``pool`` (asyncpg) may be served now.

        False when it does not answer (no connection within 5 s, a failed
        read) as when its schema is behind the code; else :meth:`read`'s answer.
        """
        try:
            async with pool.acquire(timeout=5) as conn:
                return await self.read(conn)
        except Exception:  # readiness is a yes/no question
            return False

    def observe(self, found: int) -> bool:
        """Note that the schema is at ``found`` now; whether the replica may serve on.

        Logged once per change of the version read, not at every check.
        """
        previous, self.found = self.found, found
        self._gauge.set(found - self.known)
        if found != previous:
            self._log_change(found)
        return found >= self.known

    def _log_change(self, found: int) -> None:
        extra = {
            "component": self.component,
            "schema": self.schema,
            "schema_version": found,
            "known": self.known,
        }
        if found > self.known:
            _log.warning(
                "the database schema is now at version %d, newer than the %d this %s knows "
                "(a newer release migrated it): serving on, as a rolling upgrade allows; "
                "upgrade this replica, which would refuse to start again",
                found,
                self.known,
                self.component,
                extra=extra,
            )
        elif found < self.known:
            _log.error(
                "the database schema is now at version %d, older than the %d this %s needs "
                "(was the database restored from an older backup?): not ready until this "
                "release's migrate brings it to %d",
                found,
                self.known,
                self.component,
                self.known,
                extra=extra,
            )
        else:
            _log.info(
                "the database schema is at version %d again, the one this %s knows: ready",
                found,
                self.component,
                extra=extra,
            )
