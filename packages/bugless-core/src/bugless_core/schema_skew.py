"""What a running replica does when its database's schema moves under it.

A service checks the applied schema version when it opens its database
(:func:`bugless_core.migrations.schema_too_new`; a schema behind its code is
refused too). While it runs, the version can still change under it, in two
ways, and they call for opposite answers (docs/upgrades.md):

* **Ahead of the code** (a newer release's ``migrate`` ran): the supported
  rolling upgrade. The chart's hook migrates while every old replica serves,
  before any new one exists, so the old replicas must stay ready, or the
  upgrade would be an outage. The replica serves on and says so: a WARNING
  when it sees the new version, and the skew in a gauge, for an alert on a
  rollout that stalls (a replica that restarts now refuses to start).
* **Behind the code** (a restore of an older backup, the schema dropped, a
  deployment pointed at another database): never a supported state. Its
  statements may name tables and columns that are not there, and a restart
  would refuse it, so the replica reports itself not ready (ERROR, the
  gauge) until ``migrate`` brings the schema back to its version, then ready
  again (INFO).

:class:`SchemaSkewCheck` holds that rule; a backend feeds it the version it
reads on each readiness check (cheap: the ledger's highest row, at most
every couple of seconds while something probes readiness).
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

_log = logging.getLogger("bugless_core.schema_skew")
_GAUGES: dict[CollectorRegistry, Gauge] = {}


def skew_gauge(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """``bugless_schema_version_skew{component}`` on ``registry`` (made once per registry)."""
    gauge = _GAUGES.get(registry)
    if gauge is None:
        gauge = _GAUGES[registry] = Gauge(
            "bugless_schema_version_skew",
            "The database's applied schema version minus the newest this replica's code "
            "knows, as its last readiness check read it: 0 matched; above 0 a newer release "
            "migrated the database (serving on, a rollout in progress: upgrade the replica); "
            "below 0 the schema is older than the code (not ready until migrated).",
            ["component"],
            registry=registry,
        )
    return gauge


class SchemaSkewCheck:
    """One replica's view of its database's schema version against its code's (see the module).

    Args:
        component: The package whose schema it is (``bugless-model-postgres``),
            for messages and the gauge's label.
        known: The newest version this code ships.
        registry: Where the gauge goes (the process registry, which a
            service's ``/metrics`` serves, unless a test has its own).

    Attributes:
        found: The version the last check read (``known`` until one did).
    """

    def __init__(
        self, component: str, known: int, *, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.component = component
        self.known = known
        self.found = known
        self._gauge = skew_gauge(registry).labels(component)
        self._gauge.set(0)

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
        extra = {"component": self.component, "schema_version": found, "known": self.known}
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
