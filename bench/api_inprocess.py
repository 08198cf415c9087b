"""bugless' own Python of one GetIssue through the API, in process, without grpclib, h2 or TLS.

    python -m bench.api_inprocess [--calls 4000] [--rounds 16] [--before CHECKOUT] [--profile]

``bench.api`` measures the API process's whole CPU per GetIssue, of which the
transport (grpclib, h2, hpack, hyperframe, TLS) is most; this runs only the
code bugless owns on that path, in one process, so that a change to it can be
measured below what ``bench.api`` resolves on a shared host:

* the call tracker (:class:`bugless_core.grpc._calls.CallTracker`: call
  context, ACCESS check, metrics, the drain's bookkeeping) and the gateway's
  admission (identity cached for the connection, rate limit), around
* betterproto2's generated handler, ``IssuesService.get_issue`` and its
  :class:`~bugless_api._coalesce.IssueReader` batch: the Model's
  ``BatchGetIssues`` reply parsed by upb from bytes made once (no network),
  people named from a warm user cache, each issue answered in its wire form,
* the upb codec's decode of the request and encode of the reply.

Calls run as grpclib runs them, one task each, ``--concurrent`` at a time
(the reader batches them as it batches 16 clients' calls). What grpclib's
stream would give the handler (its peer, metadata, ``recv_message``,
``send_message``, the trailers) is a stand-in holding the same objects.

``--before CHECKOUT`` also runs an older checkout's tracker and gateway
(``_calls.py`` and ``_gateway.py`` loaded from it under other names, the rest
shared), rounds alternating which goes first: CPU (``time.process_time``) per
GetIssue, min and median of the rounds. ``--profile`` prints where the
current code's time goes (cProfile, self time by part: inflated by the
profiler, the proportions are the finding).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import importlib.util
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

from grpclib.client import Channel
from grpclib.protocol import Peer
from multidict import MultiDict
from prometheus_client import CollectorRegistry

import bugless_api._gateway as current_gateway
import bugless_core.grpc._calls as current_calls
from bugless_api._coalesce import IssueReader
from bugless_api._identity import CallerIdentity, _Entry
from bugless_api._issues import IssuesService
from bugless_api._wire_issues import BATCH_GET_ISSUES
from bugless_api.settings import ApiSettings, RateLimitSettings
from bugless_core.clients import ServiceAddress
from bugless_core.grpc import UpbCodec
from bugless_core.grpc._access import AccessRules
from bugless_core.grpc._metrics import GrpcServerMetrics
from bugless_core.grpc._peer import ConnectionRegistry
from bugless_core.grpc._settings import TransferServerSettings
from bugless_proto import v1

METHOD = "/bugless.v1.Issues/GetIssue"
#: Distinct issues read in turn, and the people they name (all in the user cache).
ISSUES = 200
PEOPLE = 40
_CODEC = UpbCodec()

Handler = Callable[[Any], Coroutine[Any, Any, None]]


def _model_reply(issue_id: int) -> bytes:
    """One issue as the Model's BatchGetIssues reply holds it (replies concatenate)."""
    issue = v1.Issue(
        id=issue_id,
        title=f"issue {issue_id}: a title of the usual length for a bug",
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P2,
        component_id=7,
        reporter=f"u{issue_id % PEOPLE}",
        assignee=f"u{(issue_id + 1) % PEOPLE}",
        cc=[f"u{(issue_id + 2) % PEOPLE}", f"u{(issue_id + 3) % PEOPLE}"],
        version=3,
    )
    return bytes(v1.BatchGetIssuesResponse(issues=[issue]))


_REPLIES = {i: _model_reply(i) for i in range(1, ISSUES + 1)}


class _SslObject:
    """The verified client certificate, as the TLS transport hands it over."""

    def getpeercert(self, binary_form: bool = False) -> Any:
        return b"\x30\x03bot" if binary_form else {"subject": ((("commonName", "bot"),),)}


class _Transport:
    _ssl = _SslObject()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"ssl_object": self._ssl, "peername": ("127.0.0.1", 5555)}.get(name, default)


class _Stream:
    """What the handler chain reads of grpclib's server stream; the codec's work kept."""

    def __init__(self, peer: Peer, request: bytes) -> None:
        self.peer = peer
        self.metadata: MultiDict[str] = MultiDict()
        #: The client's user-agent header (the tracker keeps a connection's first).
        self.user_agent: str | None = None
        self.request = request
        self.sent = b""

    async def recv_message(self) -> Any:
        return _CODEC.decode(self.request, v1.GetIssueRequest)

    async def send_message(self, message: Any) -> None:
        self.sent = _CODEC.encode(message, v1.Issue)

    async def send_trailing_metadata(self, **_: Any) -> None:
        return None


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


Ended = Callable[[asyncio.Task[Any]], None] | None


def build(calls: ModuleType, gateway_module: ModuleType) -> tuple[Handler, list[_Stream], Ended]:
    """The tracked, admitted GetIssue handler of ``calls``/``gateway_module``, its streams,
    and what the server calls with each call's task once done (None: the tracker adds its
    own done-callback, as before 2026-12-07)."""
    settings = ApiSettings(
        grpc=TransferServerSettings(
            tls_cert=Path("unused"),
            tls_key=Path("unused"),
            client_ca=Path("unused"),
            insecure_local=True,
        ),
        model=ServiceAddress("127.0.0.1", 1),
        auth=ServiceAddress("127.0.0.1", 1),
        rate_limit=RateLimitSettings(rate=1e9, burst=10**9),
        user_cache_seconds=3600.0,
        user_changes_seconds=0.0,
    )
    channel = Channel("127.0.0.1", 1)  # never connected: nothing calls it
    gateway = gateway_module.Gateway(settings, v1.ModelStub(channel), v1.AuthenticatorStub(channel))

    async def batch_get(request: v1.BatchGetIssuesRequest) -> Any:
        return BATCH_GET_ISSUES.parse(b"".join(_REPLIES[i] for i in request.issue_ids))

    gateway.issue_reader = IssueReader(batch_get, gateway.users)
    gateway.users.cache._remember(
        [v1.User(user_id=f"u{i}", username=f"user{i:04d}") for i in range(PEOPLE)], 1
    )
    service = IssuesService(gateway)
    generated = v1.IssuesBase.__mapping__(service)[METHOD].func
    admitted = gateway_module.GatewayService._admitted(service, METHOD, generated)
    connections = ConnectionRegistry()
    tracker = calls.CallTracker(
        service_name="api",
        metrics=GrpcServerMetrics.for_registry(CollectorRegistry()),
        connections=connections,
        drain_exempt_methods=(),
        access=AccessRules([service], roles=settings.grpc.access_roles),
    )
    handler: Handler = tracker._tracked(METHOD, admitted)
    peer = Peer(_Transport())  # type: ignore[arg-type]
    identity = CallerIdentity(
        identity=v1.Identity(user=v1.User(user_id="u1", username="bot"), groups=["eng"]),
        caller=v1.Caller(user_id="u1", groups=["eng"]),
        subject="CN=bot",
    )
    gateway.identities._cache[connections.connection_of(peer)] = _Entry(identity, float("inf"))
    streams = [_Stream(peer, bytes(v1.GetIssueRequest(issue_id=i))) for i in _REPLIES]
    return handler, streams, getattr(tracker, "call_ended", None)


async def measure(
    handler: Handler, streams: list[_Stream], ended: Ended, calls: int, concurrent: int
) -> float:
    """CPU microseconds per GetIssue over ``calls`` calls, ``concurrent`` tasks at a time.

    ``ended`` is added to each task as the server's done-callback would be.
    """
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for start in range(0, calls, concurrent):
        batch = [streams[(start + j) % len(streams)] for j in range(concurrent)]
        tasks = [loop.create_task(handler(s)) for s in batch]
        if ended is not None:
            for task in tasks:
                task.add_done_callback(ended)
        await asyncio.gather(*tasks)
    return (time.process_time() - started) / calls * 1e6


_PARTS = (
    ("call tracker + metrics", ("grpc/_calls", "grpc/_peer", "grpc/_access", "prometheus_client")),
    ("admission", ("_gateway.py", "_identity", "_ratelimit", "grpc/_errors", "weakref")),
    ("handler, get_issue, caller_of", ("bugless/v1/__init__", "_issues.py")),
    ("coalescer", ("_coalesce", "_batching")),
    ("naming", ("user_cache", "_users.py", "user_changes", "_wire_issues")),
    ("codec", ("grpc/_codec", "bugless_proto/wire", "_encoded", "FromString", "betterproto2")),
    ("asyncio (tasks, futures, callbacks)", ("asyncio", "_contextvars")),
)


async def profile(
    handler: Handler, streams: list[_Stream], ended: Ended, calls: int, concurrent: int
) -> None:
    """Print the current code's profiled self time by part (see ``_PARTS``)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    await measure(handler, streams, ended, calls, concurrent)
    profiler.disable()
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())
    shares: collections.Counter[str] = collections.Counter()
    for (file, line, name), row in stats.items():
        where = f"{file}:{line}:{name}"
        part = next((p for p, marks in _PARTS if any(m in where for m in marks)), "other")
        shares[part] += row[2]
    print(f"\nprofiled ({calls:,} calls), self time by part:")
    for part, seconds in shares.most_common():
        print(f"  {seconds / total:6.1%}  {part}")


async def run(args: argparse.Namespace) -> None:
    ways = {"current": build(current_calls, current_gateway)}
    if args.before is not None:
        root = Path(args.before)
        ways["before"] = build(
            _load("before_calls", root / "packages/bugless-core/src/bugless_core/grpc/_calls.py"),
            _load("before_gateway", root / "packages/bugless-api/src/bugless_api/_gateway.py"),
        )
    for handler, streams, ended in ways.values():
        await measure(handler, streams, ended, 800, args.concurrent)  # warm: caches, batches
        if not all(s.sent for s in streams):
            raise SystemExit("a GetIssue went unanswered")
    figures: dict[str, list[float]] = {name: [] for name in ways}
    for round_number in range(args.rounds):
        order = list(ways) if round_number % 2 == 0 else list(reversed(ways))
        for name in order:
            figures[name].append(await measure(*ways[name], args.calls, args.concurrent))
    for name, values in figures.items():
        print(
            f"{name:8} CPU µs per GetIssue: min {min(values):.1f}, median "
            f"{statistics.median(values):.1f} ({args.rounds} rounds of {args.calls:,}, "
            f"{args.concurrent} at a time)"
        )
    if args.profile:
        await profile(*ways["current"], args.calls, args.concurrent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="GetIssue calls per round")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--concurrent", type=int, default=8, help="calls in flight at once")
    parser.add_argument("--before", default=None, help="an older checkout's root, run alongside")
    parser.add_argument("--profile", action="store_true", help="where the current code's time goes")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
