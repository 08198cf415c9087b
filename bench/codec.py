"""Wire codec cost: grpclib's ProtoCodec (betterproto2, pure Python) against UpbCodec.

    python -m bench.codec [--repeat 7] [--seconds 0.3]

Times, in this process, what a server or channel spends encoding and decoding
one ``Issue`` and one ``SearchIssuesResponse`` of 50 issues (a search page):
``ProtoCodec`` is what every bugless server and channel used before (it calls
betterproto2's ``SerializeToString``/``FromString``); ``UpbCodec`` is what they
use now (:mod:`bugless_core.grpc._codec`, converting to and from upb messages).
The messages are realistic (titles, a 400-character description, cc lists,
hotlists, timestamps, a closed issue) and both codecs' bytes are checked to be
identical first. Figures are CPU microseconds per call (``time.process_time``,
best of ``--repeat`` rounds, each round long enough to be measurable), so a
busy machine inflates them less than wall-clock time would; the 1-minute
load average is printed with them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from grpclib.encoding.proto import ProtoCodec

from bugless_core.grpc import UpbCodec
from bugless_proto import v1

_START = datetime.datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=datetime.UTC)
_WORDS = ("disk", "full", "on", "the", "build", "cluster", "when", "nightly", "jobs", "rotate")


def sample_issue(n: int) -> v1.Issue:
    """The ``n``-th issue of a page: every commonly set field, values varying with ``n``."""
    closed = n % 3 == 0
    title = " ".join(_WORDS[(n + i) % len(_WORDS)] for i in range(9))
    return v1.Issue(
        id=100_000 + n,
        title=f"{title} (#{n})",
        status=v1.Status.FIXED if closed else v1.Status.ASSIGNED,
        priority=v1.Priority(1 + n % 5),
        severity=v1.Severity(1 + n % 5),
        type=v1.IssueType(1 + n % 3),
        component_id=40 + n % 7,
        reporter=f"u_{n:012x}reporter",
        assignee=f"u_{n:012x}assignee",
        verifier="" if n % 2 else f"u_{n:012x}verifier",
        cc=[f"u_{n + i:012x}cc" for i in range(n % 4)],
        hotlist_ids=[7, 11][: n % 3],
        blocking_ids=[200_000 + n] if n % 5 == 0 else [],
        parent_id=99_000 if n % 4 == 0 else 0,
        description=("Steps: run the job, wait, look at df -h. Ünïcode too. " * 8)[:400],
        created_at=_START + datetime.timedelta(hours=n),
        modified_at=_START + datetime.timedelta(hours=n, minutes=17, microseconds=n),
        closed_at=_START + datetime.timedelta(days=1, hours=n) if closed else None,
        version=1 + n % 9,
        comment_count=n % 12,
    )


def cpu_microseconds(call: Callable[[], Any], *, repeat: int, seconds: float) -> float:
    """Best-of-``repeat`` CPU microseconds per ``call()``, each round ``seconds`` or more."""
    number = 1
    while True:
        start = time.process_time()
        for _ in range(number):
            call()
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            break
        number *= 2
    best = elapsed / number
    for _ in range(repeat - 1):
        start = time.process_time()
        for _ in range(number):
            call()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds per figure (best is kept)")
    parser.add_argument("--seconds", type=float, default=0.3, help="CPU seconds per round")
    args = parser.parse_args()

    proto, upb = ProtoCodec(), UpbCodec()
    page = v1.SearchIssuesResponse(
        issues=[sample_issue(n) for n in range(50)], total_count=1234, next_page_token="t" * 24
    )
    cases: list[tuple[str, Any]] = [("Issue", sample_issue(3)), ("SearchIssuesResponse, 50", page)]
    for _, message in cases:
        kind = type(message)
        data = proto.encode(message, kind)
        if upb.encode(message, kind) != data:
            raise SystemExit(f"{kind.__name__}: the codecs' bytes differ")
        if upb.decode(data, kind) != proto.decode(data, kind):
            raise SystemExit(f"{kind.__name__}: the codecs decode differently")

    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    print(
        f"{'message':<26} {'bytes':>6} {'op':<7} {'betterproto2 µs':>16} {'upb µs':>9} {'ratio':>6}"
    )
    for label, message in cases:
        kind = type(message)
        data = proto.encode(message, kind)
        ops = (
            ("encode", partial(proto.encode, message, kind), partial(upb.encode, message, kind)),
            ("decode", partial(proto.decode, data, kind), partial(upb.decode, data, kind)),
        )
        for op, slow, fast in ops:
            before = cpu_microseconds(slow, repeat=args.repeat, seconds=args.seconds)
            after = cpu_microseconds(fast, repeat=args.repeat, seconds=args.seconds)
            print(
                f"{label:<26} {len(data):>6} {op:<7} {before:>16.1f} {after:>9.1f} "
                f"{before / after:>5.1f}x"
            )
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    print("bytes and decoded objects identical between the codecs: yes")


if __name__ == "__main__":
    main()
