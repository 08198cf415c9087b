"""Change-to-inbox latency of the whole notification path, and its sustained rate.

    python -m bench.notify_latency [--rate 50] [--seconds 20] [--burst 2000]

Real processes through the stack library: PostgreSQL, the Model, the
Authenticator and one ``bugless notify serve``, mutual TLS between them; the
SMTP sink (aiosmtpd, :mod:`bugless_testing.smtp`) runs on its own thread in
this process and stamps each mail as it arrives. This process plays the web
frontend: it comments on issues assigned to one person, so every change is one
mail (``change-<issue>-<version>/email/<user>``).

* **latency**: ``--rate`` changes per second for ``--seconds``; for each, the
  time from ChangeIssue returning (committed) to its mail being accepted by
  the SMTP server; p50, p95, max.
* **throughput**: ``--burst`` changes made as fast as one client can, then
  the time until the last mail arrived: mails/s one notifier sustains end to
  end (feed read, recipients checked as the recipient through the Model,
  rendered, queued, delivered).

Target (issue 16): p95 <= 2 s at 50 changes/s; >= 300 mails/s.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import threading
import time

from bench._services import BenchStack, load_average
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="bench-admin", admin=True)


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


async def _run(args: argparse.Namespace) -> None:
    bench = BenchStack.start()
    sink = SmtpSink().start()
    arrived: dict[str, float] = {}
    stop = threading.Event()
    stamper = threading.Thread(target=stamp_forever, args=(sink, arrived, stop), daemon=True)
    stamper.start()
    try:
        stack = bench.stack
        tag = secrets.token_hex(3)
        alice = stack.add_user(f"alice{tag}", "pw-" + tag * 3, email=f"alice{tag}@bench.test")
        bob = stack.add_user(f"bob{tag}", "pw-" + tag * 3, email=f"bob{tag}@bench.test")
        notifier = stack.start_notify(
            "--smtp-host", "127.0.0.1", "--smtp-port", str(sink.port),
            "--smtp-security", "none", "--concurrency", "64",
        )  # fmt: skip
        channel = stack.client_address("model", identity="web").channel()
        model = v1.ModelStub(channel)
        author = v1.Caller(user_id=alice["user_id"])
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"bench-{tag}")
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
        versions = {i.id: i.version for i in issues}
        committed: dict[str, float] = {}
        locks = {i.id: asyncio.Lock() for i in issues}

        async def change(issue_id: int, n: int) -> None:
            async with locks[issue_id]:
                response = await model.change_issue(
                    v1.ChangeIssueRequest(
                        caller=author,
                        issue_id=issue_id,
                        expected_version=versions[issue_id],
                        comment=f"change {n}",
                    )
                )
                assert response.issue is not None
                versions[issue_id] = response.issue.version
                key = f"change-{issue_id}-{response.issue.version}/email/{bob['user_id']}"
                committed[key] = time.monotonic()

        # Latency at a steady rate.
        total = args.rate * args.seconds
        start = time.monotonic()
        tasks = []
        for n in range(total):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            tasks.append(asyncio.ensure_future(change(issues[n % len(issues)].id, n)))
        await asyncio.gather(*tasks)
        achieved = total / (time.monotonic() - start)
        steady = dict(committed)
        await _all_arrived(steady, arrived, 120)
        latencies = sorted(arrived[k] - t for k, t in steady.items() if k in arrived)
        lost = len(steady) - len(latencies)
        q = statistics.quantiles(latencies, n=100)
        print(
            f"latency  rate {achieved:.0f}/s  changes {total}  p50 {q[49]:.2f} s  "
            f"p95 {q[94]:.2f} s  max {latencies[-1]:.2f} s  missing {lost}  "
            f"load {load_average()}"
        )

        # Throughput: a burst, then until the last mail arrived.
        committed.clear()
        start = time.monotonic()
        await asyncio.gather(*(change(issues[n % len(issues)].id, n) for n in range(args.burst)))
        made = time.monotonic() - start
        burst = dict(committed)
        await _all_arrived(burst, arrived, 300)
        done = max(arrived[k] for k in burst if k in arrived)
        delivered = sum(1 for k in burst if k in arrived)
        print(
            f"burst    changes {args.burst} made in {made:.1f} s  delivered {delivered}  "
            f"end-to-end {delivered / (done - start):.0f} mails/s  load {load_average()}"
        )
        channel.close()
        stack.stop_service(notifier)
    finally:
        stop.set()
        sink.stop()
        bench.stop()


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=50, help="changes per second")
    parser.add_argument("--seconds", type=int, default=20, help="how long at that rate")
    parser.add_argument("--burst", type=int, default=2000, help="changes in the burst")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
