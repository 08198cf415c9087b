"""How many mails per second one notifier process delivers to a local SMTP server.

    python -m bench.notify_delivery [--mails 4000] [--concurrency 8,32,64]
                                    [--smtp-connections N] [--repeat 1] [--database-url URL]

The setup an operator would run, minus the change feed: a throwaway PostgreSQL
(or ``--database-url``), the notifier's queue migrated into a fresh schema per
measurement, ``--mails`` rendered notifications enqueued (not timed), and an
SMTP server (:mod:`bugless_testing.smtp`, aiosmtpd) in **its own
process**, so it does not share this process's GIL. This process then runs
one :class:`~bugless_notify.worker.DeliveryWorker` with the ``email`` channel
until every mail is delivered and recorded, and prints per row:

* mails/s (wall clock, first claim to last "delivered" row);
* CPU milliseconds per mail of the notifier process, the SMTP server and
  PostgreSQL (all its backends), from ``/proc``: these stay meaningful on a
  shared machine when the wall clock does not;
* the 1-minute load average while it ran.

The SMTP channel gets one session per attempt in flight unless
``--smtp-connections`` says otherwise: a mail costs four round trips to the
relay (MAIL, RCPT, DATA, the message), so sessions, not CPU, bound a
notifier's rate.

Target (issue 16): at least 300 mails/s from one notifier process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

from bench._services import CpuMeter
from bugless_dev.postgres import start_postgres
from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.queue import DeliveryQueue, NewDelivery
from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
from bugless_notify.retry import RetryPolicy
from bugless_notify.worker import DeliveryWorker, WorkerSettings
from bugless_proto import v1


def _deliveries(count: int) -> list[NewDelivery]:
    """``count`` mails about 50 issues, each rendered for its own recipient."""
    people = {"u_alice": Person("Alice Smith", "alice"), "u_bob": Person("Bob Jones", "bob")}
    out = []
    for n in range(count):
        issue_id = 1000 + n % 50
        issue = v1.Issue(
            id=issue_id,
            title=f"Disk full on /var (host {n % 50})",
            status=v1.Status.ASSIGNED,
            priority=v1.Priority.P1,
            component_id=7,
            reporter="u_alice",
            assignee="u_bob",
            version=n // 50 + 2,
        )
        entry = v1.HistoryEntry(
            issue_id=issue_id,
            version=n // 50 + 2,
            author="u_alice",
            comment="Moved to P1; the nightly job fills /var again.\n\nSee the graph.",
            changes=[
                v1.FieldChange(field="status", old_value="NEW", new_value="ASSIGNED"),
                v1.FieldChange(field="priority", old_value="P2", new_value="P1"),
                v1.FieldChange(field="cc", added=["u_bob"]),
            ],
        )
        message = render_notification(
            ChangeNotice(
                issue=issue,
                entry=entry,
                reason=Reason.CC,
                public_url="https://bugs.example.com",
                people=people,
                components={7: "Platform>Storage"},
            )
        )
        out.append(
            NewDelivery(
                delivery_id=f"bench-{n}",
                channel="email",
                recipient=f"user{n}@example.com",
                recipient_name=f"User {n}",
                message=message,
            )
        )
    return out


def _postmaster_pid(data_directory: str) -> int:
    return int(Path(data_directory, "postmaster.pid").read_text().split()[0])


def _start_sink() -> tuple[subprocess.Popen[str], int]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "bugless_testing.smtp"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None
    line = sink.stdout.readline()
    if not line.startswith("listening on "):
        sink.kill()
        raise RuntimeError(f"the SMTP sink did not start: {line!r}")
    return sink, int(line.rsplit(":", 1)[1])


async def _measure(
    database_url: str,
    deliveries: list[NewDelivery],
    *,
    concurrency: int,
    smtp_port: int,
    smtp_connections: int,
    meter: CpuMeter,
) -> tuple[float, dict[str, float]]:
    """Deliver ``deliveries`` once; return (seconds, CPU seconds by process)."""
    queue = DeliveryQueue(f"bench_{secrets.token_hex(4)}")
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=concurrency // 4 + 4)
    try:
        await queue.migrate(pool)
        async with pool.acquire() as conn:
            await queue.enqueue(conn, deliveries)
        registry = CollectorRegistry()
        channel = EmailChannel(
            SmtpSettings(
                host="127.0.0.1",
                port=smtp_port,
                security=SmtpSecurity.NONE,
                sender="bugless <bugless@bugs.example.com>",
                max_connections=smtp_connections,
            )
        )
        worker = DeliveryWorker(
            pool,
            queue,
            {"email": channel},
            WorkerSettings(concurrency=concurrency, retry=RetryPolicy(max_attempts=3)),
            metrics_registry=registry,
        )
        meter.start()
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        labels = {"channel": "email", "outcome": "delivered"}
        while (registry.get_sample_value("bugless_notify_deliveries_total", labels) or 0) < len(
            deliveries
        ):
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped early")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        worker.stop()
        await task
        await channel.close()
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {queue.schema} CASCADE")
    finally:
        await pool.close()
    return elapsed, cpu


async def _run(args: argparse.Namespace, database_url: str) -> None:
    print(f"rendering {args.mails} notifications ...", flush=True)
    deliveries = _deliveries(args.mails)
    conn = await asyncpg.connect(database_url)
    try:
        postgres_pid = _postmaster_pid(await conn.fetchval("SHOW data_directory"))
    finally:
        await conn.close()
    sink, port = _start_sink()
    try:
        meter = CpuMeter({"notifier": os.getpid(), "smtp": sink.pid, "postgres": postgres_pid})
        print(
            f"{'concurrency':>11} {'mails':>6} {'seconds':>8} {'mails/s':>8} "
            f"{'notifier ms/mail':>16} {'smtp ms/mail':>12} {'postgres ms/mail':>16} {'load':>5}"
        )
        for concurrency in args.concurrency:
            for _ in range(args.repeat):
                load_before = os.getloadavg()[0]
                seconds, cpu = await _measure(
                    database_url,
                    deliveries,
                    concurrency=concurrency,
                    smtp_port=port,
                    smtp_connections=args.smtp_connections or concurrency,
                    meter=meter,
                )
                load = max(load_before, os.getloadavg()[0])
                per = {name: 1000 * value / args.mails for name, value in cpu.items()}
                print(
                    f"{concurrency:>11} {args.mails:>6} {seconds:>8.2f} "
                    f"{args.mails / seconds:>8.0f} {per['notifier']:>16.2f} "
                    f"{per['smtp']:>12.2f} {per['postgres']:>16.2f} {load:>5.1f}",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"notifier process total CPU: {rusage.ru_utime + rusage.ru_stime:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mails", type=int, default=4000)
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[8, 32, 64],
        help="comma-separated attempts in flight per row",
    )
    parser.add_argument(
        "--smtp-connections", type=int, help="SMTP sessions (default: one per attempt in flight)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--database-url", help="an existing PostgreSQL (superuser DSN)")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(_run(args, args.database_url))
        return
    server = start_postgres()
    try:
        asyncio.run(_run(args, server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
