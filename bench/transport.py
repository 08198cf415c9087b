"""What a compiled gRPC transport would save: grpclib against grpcio's C core, per hop.

    python -m bench.transport [--seconds 3] [--concurrency 1,8,32] [--payload issue,page]

Every bugless service and client speaks gRPC through grpclib (HTTP/2 in pure
Python: h2, hpack, Python ``ssl``). Issue 23's remaining targets (GetIssue
through the API ≥ 0.6x the bare echo, the Model's gRPC overhead on a search
page) sit on that transport's CPU per call. ``grpcio`` (prebuilt wheels,
HTTP/2 and TLS in its C core, ``grpc.aio``) is the one compiled transport that
installs without building anything; this measures what it would save, in one
run, side by side, with the same security and the same work per call:

* four pairings of client and server (``bench._transport_clients``,
  ``bench._transport_serve``): grpclib → grpclib (today's hop), grpcio →
  grpcio, and the two mixed ones (a service switched before its callers, or
  the other way round);
* mutual TLS with certificates from ``trustme``, the client certificate
  required, its subject and the call's metadata read by the server on every
  call; requests and replies encoded and decoded with bugless' upb codec;
* two replies: one ``Issue`` (a GetIssue) and a 50-issue ``SearchIssuesResponse``
  (a search page), the messages ``bench.codec`` times;
* closed-loop clients (``bench._load``: one connection per client, spread over
  up to two spawned processes, uvloop) at each ``--concurrency``.

Figures: calls/s, p50/p99, and the CPU microseconds per call of the server
process (``/proc/<pid>/stat``, all its threads) and of the client processes
(their own CPU clock over the measured window, all threads), plus the
1-minute load average. CPU per call is the figure to trust on a shared
machine; calls/s moves with the neighbours. Rows of one payload and
concurrency run back to back, so that their load is alike, and the whole set
``--repeat`` times, interleaved; the table keeps each row's round with the
least CPU per call (every round is printed as it ends).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

from bench._load import LoadResult, default_processes, run_load
from bugless_dev.processes import ServiceProcess, clean_environment, spawn

#: (label, client kind, server kind), in the order they are measured.
PAIRS = (
    ("grpclib → grpclib", "grpclib", "grpclib"),
    ("grpcio → grpcio", "grpcio", "grpcio"),
    ("grpclib → grpcio", "grpclib", "grpcio"),
    ("grpcio → grpclib", "grpcio", "grpclib"),
)
#: --payload name -> the method that returns it.
PAYLOADS = {"issue": "Issue", "page": "Page"}
ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) ``pid`` has used, from ``/proc``.

    Here rather than ``bench._services.CpuMeter``: the client workers are
    spawned and import this module again, and ``_services`` would cost each of
    them seconds of imports (PostgreSQL and stack helpers) they never use.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def load_average() -> str:
    """The 1-minute load average, printed next to every figure."""
    return f"{os.getloadavg()[0]:.1f}"


@dataclass
class Certificates:
    """PEM files of one run: the CA, the server's certificate and the client's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 and a bot's client certificate."""
    ca = trustme.CA(organization_name="bench transport CA")
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("bench-bot.bot", common_name="bench-bot")
    files = Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.private_key_pem.write_to_path(str(files.client_key))
    files.server_cert.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    files.client_cert.write_bytes(b"".join(pem.bytes() for pem in client.cert_chain_pems))
    return files


def start_server_process(
    module: str, kind: str, args: Sequence[str], directory: Path, *, name: str = ""
) -> tuple[ServiceProcess, int]:
    """Run ``python -m MODULE KIND READY ARGS...`` from the repository root; its port once ready.

    The server binds port 0 and writes the port it got to ``READY`` (a file in
    ``directory``, next to its log, both called ``name``, by default ``kind``).
    """
    name = name or kind
    ready = directory / f"{name}.json"
    process = spawn(
        name,
        [sys.executable, "-m", module, kind, str(ready), *args],
        clean_environment(),
        directory / f"{name}.log",
        cwd=ROOT,
        ready_file=ready,
    )
    return process, process.wait_ready_file().port


def start_server(
    kind: str, certificates: Certificates, directory: Path, loop: str = "uvloop"
) -> tuple[ServiceProcess, int]:
    """Start one server process (``bench._transport_serve``); it and its port once it listens."""
    tls = [certificates.server_cert, certificates.server_key, certificates.ca]
    return start_server_process("bench._transport_serve", kind, [*map(str, tls), loop], directory)


@dataclass
class Row:
    """One measured pairing at one payload and concurrency."""

    payload: str
    pair: str
    concurrency: int
    result: LoadResult
    server_cpu: float
    load: str

    @property
    def calls(self) -> int:
        """Successful calls in the window."""
        return len(self.result.latencies)

    def server_us(self) -> float:
        """Server CPU µs per call."""
        return self.server_cpu / self.calls * 1e6 if self.calls else float("nan")

    def client_us(self) -> float:
        """Client CPU µs per call (all client processes)."""
        return self.result.client_cpu / self.calls * 1e6 if self.calls else float("nan")


def measure(
    pair: tuple[str, str, str],
    payload: str,
    concurrency: int,
    *,
    servers: dict[str, tuple[ServiceProcess, int]],
    certificates: Certificates,
    seconds: float,
) -> Row:
    """Run one pairing and read the server's CPU over the same window."""
    label, client, server = pair
    process, port = servers[server]
    before: list[float] = []
    params = {
        "port": port,
        "method": PAYLOADS[payload],
        "ca": str(certificates.ca),
        "cert": str(certificates.client_cert),
        "key": str(certificates.client_key),
        "pem": {
            "ca": certificates.ca.read_bytes(),
            "cert": certificates.client_cert.read_bytes(),
            "key": certificates.client_key.read_bytes(),
        },
    }
    result = run_load(
        f"bench._transport_clients:{client}_call",
        params,
        concurrency=concurrency,
        processes=default_processes(concurrency),
        seconds=seconds,
        on_start=lambda: before.append(process_cpu(process.pid)),
    )
    cpu = process_cpu(process.pid) - before[0]
    if result.errors:
        print(f"  {label}: {result.errors} failed calls, first: {result.first_error}")
    return Row(payload, label, concurrency, result, cpu, load_average())


def best_rows(rows: list[Row]) -> list[Row]:
    """Per payload, concurrency and pairing, the round with the least CPU per call.

    On a machine shared with other work a round's CPU per call only goes up
    (fewer calls per wake-up, caches shared): the least of several rounds is
    the closest to the transport's own cost, as ``bench.codec`` keeps the best.
    """
    best: dict[tuple[str, int, str], Row] = {}
    for row in rows:
        key = (row.payload, row.concurrency, row.pair)
        kept = best.get(key)
        if kept is None or row.server_us() + row.client_us() < kept.server_us() + kept.client_us():
            best[key] = row
    return list(best.values())


def print_table(rows: list[Row]) -> None:
    """The rows as a Markdown table, each against grpclib → grpclib at its payload and c."""
    print(
        "| payload | client → server | c | calls/s | p50 ms | p99 ms "
        "| CPU µs/call: server · client (sum) | sum vs grpclib | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference = {
        (row.payload, row.concurrency): row.server_us() + row.client_us()
        for row in rows
        if row.pair == PAIRS[0][0]
    }
    for row in rows:
        total = row.server_us() + row.client_us()
        base = reference.get((row.payload, row.concurrency))
        ratio = f"{total / base:.2f}x" if base else "—"
        print(
            f"| {row.payload} | {row.pair} | {row.concurrency} | {row.result.rate:,.0f} "
            f"| {row.result.percentile(50):.2f} | {row.result.percentile(99):.2f} "
            f"| {row.server_us():.0f} · {row.client_us():.0f} ({total:.0f}) | {ratio} "
            f"| {row.load} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument(
        "--concurrency", default="1,8,32", help="comma-separated closed-loop client counts"
    )
    parser.add_argument("--payload", default="issue,page", help="issue, page or both")
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds of every row, interleaved (best is kept)"
    )
    parser.add_argument(
        "--server-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the servers' event loop (clients always run on uvloop, as bugless' do)",
    )
    parser.add_argument(
        "--model",
        type=int,
        default=0,
        metavar="ISSUES",
        help="instead: the real Model (GetIssue, SearchIssues) over grpclib and grpcio, "
        "on a throwaway PostgreSQL seeded with ISSUES issues",
    )
    parser.add_argument(
        "--pairs", default="", help="comma-separated subset of: ll,cc,lc,cl (l=grpclib, c=grpcio)"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    payloads = [p for p in args.payload.split(",") if p]
    codes = {"ll": 0, "cc": 1, "lc": 2, "cl": 3}
    pairs = [PAIRS[codes[c]] for c in args.pairs.split(",") if c] or list(PAIRS)
    for payload in payloads:
        if payload not in PAYLOADS:
            raise SystemExit(f"unknown payload {payload!r}: issue or page")
    if args.model:
        from bench._transport_model import run_model_rows  # noqa: PLC0415

        run_model_rows(levels, args.seconds, args.repeat, args.model)
        return

    with tempfile.TemporaryDirectory(prefix="bench-transport-") as temporary:
        directory = Path(temporary)
        certificates = make_certificates(directory)
        servers: dict[str, tuple[ServiceProcess, int]] = {}
        try:
            for kind in ("grpclib", "grpcio"):
                servers[kind] = start_server(kind, certificates, directory, args.server_loop)
            print(
                f"servers on {args.server_loop}; load average (1 min) at start: {load_average()}",
                flush=True,
            )
            rows: list[Row] = []
            for round_number in range(1, args.repeat + 1):
                print(f"round {round_number}", flush=True)
                for payload, concurrency, pair in itertools.product(payloads, levels, pairs):
                    try:
                        row = measure(
                            pair,
                            payload,
                            concurrency,
                            servers=servers,
                            certificates=certificates,
                            seconds=args.seconds,
                        )
                    except RuntimeError as error:  # a client failed: say so, keep going
                        server = servers[pair[2]][0]
                        print(f"  {payload} {pair[0]} c={concurrency}: FAILED: {error}")
                        print(f"  {pair[2]} server's log, last lines:\n{server.output()[-2000:]}")
                        continue
                    rows.append(row)
                    print(
                        f"  {payload} {pair[0]} c={concurrency}: {row.result.rate:,.0f}/s, "
                        f"p50 {row.result.percentile(50):.2f} ms, "
                        f"server {row.server_us():.0f} µs, client {row.client_us():.0f} µs, "
                        f"load {row.load}",
                        flush=True,
                    )
            print_table(best_rows(rows))
        finally:
            for process, _ in servers.values():
                process.stop()


if __name__ == "__main__":
    main()
