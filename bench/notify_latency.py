"""Change-to-inbox latency of the whole notification path, and its sustained rate.

    python -m bench.notify_latency [--rate 50] [--seconds 20] [--burst 2000] [--before REF]

Real processes through the stack library: PostgreSQL, the Model, the
Authenticator and one ``bugless notify serve``, mutual TLS between them; the
SMTP sink (aiosmtpd, :mod:`bugless_testing.smtp`) runs on its own thread in
this process and stamps each mail as it arrives. This process plays the web
frontend: it comments on issues assigned to one person, so every change is one
mail (``change-<issue>-<version>/email/<user>``).

* **latency**: ``--rate`` changes per second for ``--seconds``; for each, the
  time from ChangeIssue returning (committed) to its mail being accepted by
  the SMTP server; p50, p95, max.
* **throughput**: the notifier is stopped, ``--burst`` changes are made,
  the notifier is started again on its cursor, and the mails/s between the
  first and the last arrival is what one notifier sustains end to end (feed
  read, recipients checked as themselves through the Model, rendered,
  queued, delivered to SMTP), with the CPU milliseconds per mail of each
  process (notifier, Model, Authenticator, PostgreSQL; from ``/proc``).

``--before REF`` measures the notifier of git revision ``REF`` first, in the
same run on the same services (its ``bugless_notify`` is taken from ``git
archive REF`` and put first on the notifier's ``PYTHONPATH``), then this
checkout's: the ratios hold on a shared machine when the absolute figures
do not.

Target (issue 16): p95 <= 2 s at 50 changes/s; >= 300 mails/s.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._services import BenchStack, CpuMeter, load_average, notify_source_at
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink


def stamp_forever(sink: SmtpSink, arrived: dict[str, float], stop: threading.Event) -> None:
    """Record when each delivery id first arrived, until ``stop`` (runs on a thread).

    Polls every 20 ms: an arrival is stamped at most that late.
    """
    seen = 0
    while not stop.wait(0.02):
        if sink.count == seen:
            continue
        mails = sink.mails[seen:]
        now = time.monotonic()
        for mail in mails:
            arrived.setdefault(str(mail.message["X-Bugless-Delivery"]), now)
        seen += len(mails)


async def _all_arrived(
    expected: dict[str, float], arrived: dict[str, float], at_most: float
) -> None:
    """Until every expected delivery arrived, or ``at_most`` seconds (checked on a thread)."""

    def wait() -> None:
        deadline = time.monotonic() + at_most
        while time.monotonic() < deadline and not set(expected) <= set(arrived):
            time.sleep(0.1)

    await asyncio.to_thread(wait)


@dataclass
class _Rig:
    """What every variant measures with: the services, the sink, the issues."""

    bench: BenchStack
    sink: SmtpSink
    arrived: dict[str, float]
    model: v1.ModelStub
    author: v1.Caller
    recipient: str
    issues: list[int]
    versions: dict[int, int]
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    async def change(self, issue_id: int, n: int, committed: dict[str, float]) -> None:
        async with self.locks[issue_id]:
            response = await self.model.change_issue(
                v1.ChangeIssueRequest(
                    caller=self.author,
                    issue_id=issue_id,
                    expected_version=self.versions[issue_id],
                    comment=f"change {n}",
                )
            )
            assert response.issue is not None
            self.versions[issue_id] = response.issue.version
            key = f"change-{issue_id}-{response.issue.version}/email/{self.recipient}"
            committed[key] = time.monotonic()


def _notify_flags(rig: _Rig, schema: str) -> list[str]:
    return [
        "--schema", schema, "--smtp-host", "127.0.0.1", "--smtp-port", str(rig.sink.port),
        "--smtp-security", "none", "--concurrency", "64",
    ]  # fmt: skip


def _start_notifier(rig: _Rig, schema: str, env: dict[str, str]) -> RunningService:
    stack = rig.bench.stack
    args = ["notify", "serve", "--port", "0", *stack.backend_flags(), *_notify_flags(rig, schema)]
    return stack.start("notify", args, name=f"notify-{schema}", env=env)


async def _variant(rig: _Rig, label: str, env: dict[str, str], args: argparse.Namespace) -> None:
    """Latency at the rate, then the burst through a restarted notifier."""
    stack = rig.bench.stack
    schema = f"notify_{secrets.token_hex(3)}"
    notifier = _start_notifier(rig, schema, env)
    committed: dict[str, float] = {}
    total = args.rate * args.seconds
    start = time.monotonic()
    tasks = []
    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
        issue_id = rig.issues[n % len(rig.issues)]
        tasks.append(asyncio.ensure_future(rig.change(issue_id, n, committed)))
    await asyncio.gather(*tasks)
    achieved = total / (time.monotonic() - start)
    load = load_average()
    await _all_arrived(committed, rig.arrived, 300)
    latencies = sorted(rig.arrived[k] - t for k, t in committed.items() if k in rig.arrived)
    lost = len(committed) - len(latencies)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{label:7} latency  rate {achieved:.0f}/s  changes {total}  p50 {q[49]:.2f} s  "
        f"p95 {q[94]:.2f} s  max {latencies[-1]:.2f} s  missing {lost}  load {load}",
        flush=True,
    )
    # Throughput: the burst waits in the feed while the notifier is down.
    stack.stop_service(notifier)
    burst: dict[str, float] = {}
    await asyncio.gather(
        *(rig.change(rig.issues[n % len(rig.issues)], n, burst) for n in range(args.burst))
    )
    notifier = _start_notifier(rig, schema, env)
    pids = await asyncio.to_thread(rig.bench.service_pids)
    pids = {k: v for k, v in pids.items() if not k.startswith("notify")}
    meter = CpuMeter({**pids, "notify": notifier.process.pid})
    meter.start()
    await _all_arrived(burst, rig.arrived, 900)
    seconds = meter.stop()
    load = load_average()
    times = sorted(rig.arrived[k] for k in burst if k in rig.arrived)
    delivered = len(times)
    rate = delivered / max(times[-1] - times[0], 1e-9) if delivered > 1 else 0.0
    cpu = " · ".join(
        f"{name} {seconds[name] * 1000 / max(delivered, 1):.2f}"
        for name in ("notify", "model", "auth", "postgres")
        if name in seconds
    )
    print(
        f"{label:7} burst    changes {args.burst}  delivered {delivered}  "
        f"{rate:.0f} mails/s (first to last arrival)  CPU ms/mail: {cpu}  load {load}",
        flush=True,
    )
    stack.stop_service(notifier)


async def _run(args: argparse.Namespace) -> None:
    bench = BenchStack.start()
    sink = SmtpSink().start()
    arrived: dict[str, float] = {}
    stop = threading.Event()
    stamper = threading.Thread(target=stamp_forever, args=(sink, arrived, stop), daemon=True)
    stamper.start()
    channel = None
    try:
        stack = bench.stack
        tag = secrets.token_hex(3)
        alice = stack.add_user(
            f"alice{tag}", "pw-" + tag * 3, email=f"alice{tag}@bench.test", admin=True
        )
        bob = stack.add_user(f"bob{tag}", "pw-" + tag * 3, email=f"bob{tag}@bench.test")
        channel = stack.client_address("model", identity="web").channel()
        model = stack.acting_model(v1.ModelStub(channel))
        author = v1.Caller(user_id=alice["user_id"])
        component = await model.create_component(
            v1.CreateComponentRequest(caller=v1.Caller(user_id=alice["user_id"]), name=f"b-{tag}")
        )
        issues = [
            await model.create_issue(
                v1.CreateIssueRequest(
                    caller=author,
                    fields=v1.IssueFields(
                        title=f"bench {n}", component_id=component.id, assignee=bob["user_id"]
                    ),
                )
            )
            for n in range(50)
        ]
        rig = _Rig(
            bench, sink, arrived, model, author, bob["user_id"],
            [i.id for i in issues], {i.id: i.version for i in issues},
            {i.id: asyncio.Lock() for i in issues},
        )  # fmt: skip
        variants: list[tuple[str, dict[str, str]]] = []
        with tempfile.TemporaryDirectory(prefix="bench-notify-before-") as before:
            if args.before:
                variants.append(
                    ("before", {"PYTHONPATH": notify_source_at(args.before, Path(before))})
                )
            variants.append(("after", {}))
            for label, env in variants:
                await _variant(rig, label, env, args)
    finally:
        if channel is not None:
            channel.close()
        stop.set()
        sink.stop()
        bench.stop()


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=50, help="changes per second")
    parser.add_argument("--seconds", type=int, default=20, help="how long at that rate")
    parser.add_argument("--burst", type=int, default=2000, help="changes in the burst")
    parser.add_argument(
        "--before", default="", help="git revision whose notifier to measure first (e.g. main)"
    )
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
