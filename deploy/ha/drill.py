"""The failover drill: real replicas behind HAProxy, faults under steady load.

Run from the repository root (needs Debian's ``haproxy`` and the bugless
packages installed, e.g. the project venv)::

    python deploy/ha/drill.py              # the full drill, ~2-3 minutes
    python deploy/ha/drill.py --reduced    # the CI form, under a minute
    python deploy/ha/drill.py --no-web     # without the web tier
    python deploy/ha/drill.py --reduced --phases rolling --repeat 15   # one phase, again and again
    python deploy/ha/drill.py --reduced --phases rolling --bots 4 --api-rate 20   # a heavier load

On this machine it starts PostgreSQL, 2 Model replicas, 1 Authenticator,
2 API and 2 web replicas, all behind HAProxy (frontends reach the Model and
the Authenticator through it too), every gRPC hop on mutual TLS with the
services' own identities (HAProxy passes TLS through and balances those tiers
per connection, as a Kubernetes Service does), puts a steady bounded load on
it, and in three phases:

1. **rolling restart**: for each tier in turn, start a replacement, wait until
   HAProxy routes to it, SIGTERM the oldest replica and wait for it to drain
   and exit (the Helm chart's ``maxSurge: 1, maxUnavailable: 0``);
2. **kill a Model replica**: SIGKILL, then start a replacement;
3. **restart PostgreSQL**: stop it, watch both Model replicas report
   NOT_SERVING, start it again, watch them report SERVING (without
   restarting them).

Afterwards every write the service acknowledged is looked up in the
database, and no idempotency key may have created two issues; before and
after the phases, every gRPC replica and HAProxy frontend must answer a
health check over mutual TLS and refuse one in plaintext. It prints a
table of requests sent, succeeded, failed, retried, acknowledged writes,
writes found and recovery time per phase, and exits 1 when an invariant
(:meth:`DrillReport.violations`) does not hold. The options, the repeats and
the table are :mod:`drill_command`'s; this module is the drill itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from ha_load import LoadGenerator, LoadSettings, PhaseTally
from ha_topology import Topology, TopologySettings, grpc_health, start_topology

from bugless_api.client import BuglessClient

ROLLING, KILL, POSTGRES = "rolling restart", "kill model", "restart postgres"
#: The phases in the order they run, by their ``--phases`` name.
PHASES = {"rolling": ROLLING, "kill": KILL, "postgres": POSTGRES}


@dataclass(frozen=True)
class DrillSettings:
    """The drill's shape and pace.

    Attributes:
        topology: Replicas, drain timings, where files go.
        load: The steady load and its bounds.
        settle_seconds: Load before and after each fault, so that every fault
            happens under load and its after-effects are counted in its phase.
        outage_hold_seconds: How long PostgreSQL stays down once both Model
            replicas report NOT_SERVING.
        status_timeout: Bound on waiting for any state change (health, exit).
        phases: Which phases run (all by default), in their fixed order: a
            race seen once in one phase is chased by running it alone, many
            times.
    """

    topology: TopologySettings
    load: LoadSettings = field(default_factory=LoadSettings)
    settle_seconds: float = 4.0
    outage_hold_seconds: float = 2.0
    status_timeout: float = 30.0
    phases: tuple[str, ...] = (ROLLING, KILL, POSTGRES)

    @classmethod
    def full(cls, directory: Path, *, with_web: bool = True) -> DrillSettings:
        """The drill whose figures deploy/README.md records."""
        return cls(
            topology=TopologySettings(directory=directory, with_web=with_web, bots=4),
            load=LoadSettings(api_rate=8.0, web_workers=2, web_rate=4.0, max_requests=20_000),
            settle_seconds=4.0,
        )

    @classmethod
    def reduced(cls, directory: Path, *, with_web: bool = True) -> DrillSettings:
        """The CI form: fewer bots, shorter settling, the same faults and invariants."""
        return cls(
            topology=TopologySettings(
                directory=directory, with_web=with_web, bots=2, drain_seconds=2.0
            ),
            load=LoadSettings(
                api_rate=6.0, web_workers=1, web_rate=3.0, max_requests=4_000, max_seconds=240.0
            ),
            settle_seconds=1.0,
            outage_hold_seconds=1.0,
        )


@dataclass
class PhaseResult:
    """One phase: its tally, what was found afterwards, how long recovery took.

    Attributes:
        tally: Requests of the phase.
        writes_found: Acknowledged writes found in the database.
        missing: Acknowledged writes not found (should be empty).
        recovery_seconds: See :func:`format_table`'s legend.
        notes: What was observed (detection times, health states).
    """

    tally: PhaseTally
    writes_found: int = 0
    missing: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class DrillReport:
    """The drill's results, phase by phase.

    Attributes:
        phases: By phase name.
        model_not_serving_during_outage: Per Model replica port, whether it
            reported NOT_SERVING while PostgreSQL was down.
        model_serving_after_outage: Per port, whether it reported SERVING
            again afterwards (same process, no restart).
        model_pids_unchanged: Whether the Model replicas after the outage
            are the processes from before it.
        plaintext_refused: Per gRPC replica and HAProxy frontend, whether a
            plaintext health check got no answer (mutual TLS is required).
        mutual_tls_serving: Per the same targets, whether a health check over
            mutual TLS (a certificate of the drill's CA) answered SERVING.
        duplicate_creates: Idempotency keys that created more than one issue.
        kill_recovered: Whether requests succeeded after the killed Model
            replica's replacement was routed, and none failed from then on.
    """

    phases: dict[str, PhaseResult] = field(default_factory=dict)
    model_not_serving_during_outage: dict[int, bool] = field(default_factory=dict)
    model_serving_after_outage: dict[int, bool] = field(default_factory=dict)
    model_pids_unchanged: bool = False
    plaintext_refused: dict[str, bool] = field(default_factory=dict)
    mutual_tls_serving: dict[str, bool] = field(default_factory=dict)
    duplicate_creates: int = 0
    kill_recovered: bool = False

    def violations(self) -> list[str]:
        """Every invariant that did not hold (empty: the drill passed)."""
        found: list[str] = []
        for name, phase in self.phases.items():
            if phase.missing:
                found.append(
                    f"{name}: {len(phase.missing)} acknowledged writes lost: {phase.missing[:5]}"
                )
        rolling = self.phases.get(ROLLING)
        if rolling is not None and rolling.tally.failed:
            errors = sorted({f.error for f in rolling.tally.failures})
            found.append(f"{ROLLING}: {rolling.tally.failed} requests failed: {errors[:5]}")
        if POSTGRES in self.phases:
            found += self._outage_violations()
        if self.duplicate_creates:
            found.append(f"{self.duplicate_creates} idempotency keys created more than one issue")
        if KILL in self.phases and not self.kill_recovered:
            found.append(f"{KILL}: clients did not recover once the replacement was routed")
        answered = [t for t, refused in self.plaintext_refused.items() if not refused]
        if not self.plaintext_refused or answered:
            found.append(f"mutual TLS: plaintext health checks answered by {answered}")
        silent = [t for t, ok in self.mutual_tls_serving.items() if not ok]
        if not self.mutual_tls_serving or silent:
            found.append(f"mutual TLS: not SERVING over mutual TLS: {silent}")
        return found

    def _outage_violations(self) -> list[str]:
        found: list[str] = []
        if not self.model_not_serving_during_outage or not all(
            self.model_not_serving_during_outage.values()
        ):
            found.append(
                "restart postgres: not every Model replica reported NOT_SERVING during the "
                f"outage: {self.model_not_serving_during_outage}"
            )
        if not self.model_serving_after_outage or not all(self.model_serving_after_outage.values()):
            found.append(
                "restart postgres: not every Model replica reported SERVING after the "
                f"outage: {self.model_serving_after_outage}"
            )
        if not self.model_pids_unchanged:
            found.append("restart postgres: a Model replica was restarted to recover")
        return found


async def _wait_health(
    topology: Topology, ports: Sequence[int], service: str, status: str, *, within: float
) -> dict[int, float | None]:
    """Seconds until each port reported ``status`` (None: not within ``within`` s)."""
    started = time.monotonic()
    seen: dict[int, float | None] = dict.fromkeys(ports)
    while time.monotonic() - started < within and None in seen.values():
        for port in ports:
            if seen[port] is None and await topology.health(port, service) == status:
                seen[port] = time.monotonic() - started
        await asyncio.sleep(0.1)
    return seen


async def _check_mutual_tls(topology: Topology, report: DrillReport) -> None:
    """Every gRPC replica and HAProxy's frontends: mutual TLS answers, plaintext does not."""
    targets: dict[str, tuple[int, str]] = {
        "haproxy model frontend": (topology.layout.model_port, "bugless.v1.Model"),
        "haproxy auth frontend": (topology.layout.auth_port, "bugless.v1.Authenticator"),
    }
    for name in ("model", "auth", "api"):
        service = {"model": "bugless.v1.Model", "auth": "bugless.v1.Authenticator"}.get(name, "")
        for replica in topology.tiers[name].replicas.values():
            targets[f"{name} replica :{replica.port}"] = (replica.port, service)
    for target, (port, service) in targets.items():
        plaintext = await grpc_health(port, service, probe=None, ca=None)
        report.plaintext_refused[target] = plaintext is None
        report.mutual_tls_serving[target] = await _serving_over_mutual_tls(topology, port, service)


async def _serving_over_mutual_tls(
    topology: Topology, port: int, service: str, *, within: float = 20.0
) -> bool:
    """Whether ``port`` answers ``service`` SERVING over mutual TLS within ``within`` s.

    Asked again until then: an API replica's own health opens fresh mutual-TLS
    connections to both backends behind HAProxy, which can take more than the
    1 s of one health probe on a loaded machine, and a slow answer is not a
    refused one.
    """
    deadline = time.monotonic() + within
    while True:
        if await topology.health(port, service, within=5.0) == "SERVING":
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


def _error_window(tally: PhaseTally, since: float) -> float:
    """Seconds from ``since`` to the last failure of the phase (0: none failed)."""
    return max((f.at - since for f in tally.failures), default=0.0)


async def _rolling_restart(
    topology: Topology, load: LoadGenerator, settings: DrillSettings, result: PhaseResult
) -> None:
    started = time.monotonic()
    for name, tier in topology.tiers.items():
        old = tier.oldest()
        began = time.monotonic()
        await topology.start_replica(tier, tier.free_slot())
        surge = time.monotonic() - began
        sent_sigterm = time.monotonic()
        old.signal(signal.SIGTERM)
        out = await topology.haproxy.wait_server(
            name, tier.backend.server(old.slot), up=False, within=settings.status_timeout
        )
        drain_budget = settings.topology.drain_seconds + settings.topology.grace_seconds + 10
        code = await old.wait_exit(drain_budget)
        exited = time.monotonic() - sent_sigterm
        del tier.replicas[old.slot]
        if code is None:
            old.signal(signal.SIGKILL)
            await old.wait_exit(5)
            result.notes.append(f"{name}: the old replica did not exit after SIGTERM; killed")
        result.notes.append(
            f"{name}: replacement routed after {surge:.1f}s; old replica out of rotation "
            f"{out:.1f}s after SIGTERM (at +{sent_sigterm - started:.2f}s), exited ({code}) "
            f"after {exited:.1f}s"
        )
        await asyncio.sleep(settings.settle_seconds)
    result.recovery_seconds = _error_window(result.tally, started)
    # A rolling restart should fail nothing: when one does, say when, beside
    # the tiers' SIGTERM times above, so the next run's report shows which
    # tier's restart cut it.
    result.notes.extend(
        f"failed at +{f.at - started:.2f}s: {f.operation}: {f.error}" for f in result.tally.failures
    )


async def _kill_model(
    topology: Topology,
    load: LoadGenerator,
    settings: DrillSettings,
    result: PhaseResult,
    report: DrillReport,
) -> None:
    tier = topology.tiers["model"]
    victim = tier.oldest()
    killed = time.monotonic()
    victim.signal(signal.SIGKILL)
    await victim.wait_exit(5)
    del tier.replicas[victim.slot]
    out = await topology.haproxy.wait_server(
        "model", tier.backend.server(victim.slot), up=False, within=settings.status_timeout
    )
    result.notes.append(f"model: HAProxy marked the killed replica DOWN after {out:.2f}s")
    await asyncio.sleep(settings.settle_seconds)
    began = time.monotonic()
    await topology.start_replica(tier, tier.free_slot())
    routed = time.monotonic()
    result.notes.append(f"model: replacement routed after {routed - began:.1f}s")
    succeeded_before = result.tally.succeeded
    await asyncio.sleep(settings.settle_seconds)
    result.recovery_seconds = _error_window(result.tally, killed)
    # Clients recovered: the connections the kill broke were made again (to a
    # live replica) and calls succeed; none failed once the replacement served.
    report.kill_recovered = result.tally.succeeded > succeeded_before and not any(
        f.at >= routed for f in result.tally.failures
    )


async def _restart_postgres(
    topology: Topology,
    load: LoadGenerator,
    settings: DrillSettings,
    result: PhaseResult,
    report: DrillReport,
) -> None:
    tier = topology.tiers["model"]
    replicas = list(tier.replicas.values())
    pids = {r.process.pid for r in replicas}
    ports = [r.port for r in replicas]
    service = "bugless.v1.Model"
    stopped = time.monotonic()
    await asyncio.to_thread(topology.postgres.pause)
    down = await _wait_health(
        topology, ports, service, "NOT_SERVING", within=settings.status_timeout
    )
    report.model_not_serving_during_outage = {p: s is not None for p, s in down.items()}
    result.notes.append(
        "model: NOT_SERVING after PostgreSQL stopped: "
        + ", ".join(f":{p} {'never' if s is None else f'{s:.1f}s'}" for p, s in down.items())
    )
    await asyncio.sleep(settings.outage_hold_seconds)
    await asyncio.to_thread(topology.postgres.resume)
    restarted = time.monotonic()
    result.notes.append(f"postgres: down for {restarted - stopped:.1f}s")
    up = await _wait_health(topology, ports, service, "SERVING", within=settings.status_timeout)
    report.model_serving_after_outage = {p: s is not None for p, s in up.items()}
    report.model_pids_unchanged = pids == {r.process.pid for r in tier.replicas.values()} and all(
        not r.process.exited for r in replicas
    )
    result.notes.append(
        "model: SERVING again after PostgreSQL started: "
        + ", ".join(f":{p} {'never' if s is None else f'{s:.1f}s'}" for p, s in up.items())
    )
    recovered = [s for s in up.values() if s is not None]
    result.recovery_seconds = max(recovered) if len(recovered) == len(up) else None
    await asyncio.sleep(settings.settle_seconds)
    last_failure = max((f.at for f in result.tally.failures), default=None)
    if last_failure is not None:
        result.notes.append(
            f"load: last failed request {last_failure - restarted:+.1f}s after PostgreSQL started"
        )


async def _verify(topology: Topology, report: DrillReport) -> None:
    """Look up every acknowledged write of every phase in the Model's database."""
    conn = await asyncpg.connect(topology.model_database_url)
    try:
        for phase in report.phases.values():
            tally = phase.tally
            created = await conn.fetch(
                "SELECT id, title FROM bugless.issues WHERE id = ANY($1::bigint[])",
                [c.issue_id for c in tally.creates],
            )
            titles = {row["id"]: row["title"] for row in created}
            changed = await conn.fetch(
                "SELECT h.issue_id, h.version, h.comment FROM bugless.issue_history h "
                "JOIN unnest($1::bigint[], $2::bigint[]) AS w(issue_id, version) "
                "USING (issue_id, version)",
                [c.issue_id for c in tally.changes],
                [c.version for c in tally.changes],
            )
            comments = {(row["issue_id"], row["version"]): row["comment"] for row in changed}
            found = 0
            for create in tally.creates:
                if titles.get(create.issue_id) == create.title:
                    found += 1
                else:
                    phase.missing.append(f"create #{create.issue_id} {create.title!r}")
            for change in tally.changes:
                if comments.get((change.issue_id, change.version)) == change.comment:
                    found += 1
                else:
                    phase.missing.append(f"change #{change.issue_id} v{change.version}")
            phase.writes_found = found
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT reporter, idempotency_key FROM bugless.issues "
            "WHERE idempotency_key LIKE 'drill-%' GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        report.duplicate_creates = int(duplicates or 0)
    finally:
        await conn.close()


async def _component(topology: Topology) -> int:
    async with BuglessClient(
        topology.api_address,
        cert=topology.admin_bot.cert,
        key=topology.admin_bot.key,
        ca=topology.pki.ca_file,
    ) as admin:
        component = await admin.create_component(
            f"drill-{secrets.token_hex(3)}", description="issues of the failover drill"
        )
    return component.id


async def run_drill(settings: DrillSettings) -> DrillReport:
    """Start the topology, run the three phases under load, verify, stop everything."""
    report = DrillReport()
    topology = await start_topology(settings.topology)
    load_task: asyncio.Task[None] | None = None
    load: LoadGenerator | None = None
    try:
        await _check_mutual_tls(topology, report)
        load = LoadGenerator(
            settings.load,
            api_address=topology.api_address,
            ca_file=str(topology.pki.ca_file),
            bots=topology.bots,
            component_id=await _component(topology),
            web_url=topology.web_url,
            web_user=topology.web_user,
            run_id=secrets.token_hex(3),
        )
        load_task = asyncio.create_task(load.run())
        await asyncio.sleep(settings.settle_seconds)

        if ROLLING in settings.phases:
            result = report.phases[ROLLING] = PhaseResult(load.begin_phase(ROLLING))
            await asyncio.sleep(settings.settle_seconds)
            await _rolling_restart(topology, load, settings, result)

        if KILL in settings.phases:
            result = report.phases[KILL] = PhaseResult(load.begin_phase(KILL))
            await asyncio.sleep(settings.settle_seconds)
            await _kill_model(topology, load, settings, result, report)

        if POSTGRES in settings.phases:
            result = report.phases[POSTGRES] = PhaseResult(load.begin_phase(POSTGRES))
            await asyncio.sleep(settings.settle_seconds)
            await _restart_postgres(topology, load, settings, result, report)
        await _check_mutual_tls(topology, report)  # the replacements too

        load.begin_phase("cool-down")
        load.stop()
        await asyncio.wait_for(load_task, settings.load.call_timeout * 5)
        await _verify(topology, report)
    finally:
        if load is not None:
            load.stop()
        if load_task is not None and not load_task.done():
            load_task.cancel()
            with contextlib.suppress(BaseException):
                await load_task
        await topology.stop()
    return report


if __name__ == "__main__":
    # The command line is drill_command's; this stays the way to run the drill.
    from drill_command import main

    sys.exit(main())
