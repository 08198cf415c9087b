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
concurrency run back to back, so that their load is alike.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

from bench._load import LoadResult, default_processes, run_load
from bench._services import CpuMeter, load_average
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


def start_server(
    kind: str, certificates: Certificates, directory: Path, loop: str = "uvloop"
) -> ServiceProcess:
    """Start one server process (``bench._transport_serve``) and wait until it listens."""
    ready = directory / f"{kind}.json"
    process = spawn(
        kind,
        [
            sys.executable,
            "-m",
            "bench._transport_serve",
            kind,
            str(ready),
            str(certificates.server_cert),
            str(certificates.server_key),
            str(certificates.ca),
            loop,
        ],
        clean_environment(),
        directory / f"{kind}.log",
        cwd=ROOT,
        ready_file=ready,
    )
    process.wait_ready_file()
    return process


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
    meter = CpuMeter({server: process.pid})
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
        on_start=meter.start,
    )
    cpu = meter.stop()[server]
    if result.errors:
        print(f"  {label}: {result.errors} failed calls, first: {result.first_error}")
    return Row(payload, label, concurrency, result, cpu, load_average())


def print_table(rows: list[Row]) -> None:
    """The rows as a Markdown table, each against grpclib → grpclib at its payload and c."""
    print(
        "| payload | client → server | c | calls/s | p50 ms | p99 ms "
        "| CPU µs/call: server · client (sum) | sum vs grpclib | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference: dict[tuple[str, int], float] = {}
    for row in rows:
        total = row.server_us() + row.client_us()
        if row.pair == PAIRS[0][0]:
            reference[(row.payload, row.concurrency)] = total
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
        "--server-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the servers' event loop (clients always run on uvloop, as bugless' do)",
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

    with tempfile.TemporaryDirectory(prefix="bench-transport-") as temporary:
        directory = Path(temporary)
        certificates = make_certificates(directory)
        servers: dict[str, tuple[ServiceProcess, int]] = {}
        try:
            for kind in ("grpclib", "grpcio"):
                process = start_server(kind, certificates, directory, args.server_loop)
                servers[kind] = (process, process.wait_ready_file().port)
            print(
                f"servers on {args.server_loop}; load average (1 min) at start: {load_average()}",
                flush=True,
            )
            rows: list[Row] = []
            for payload in payloads:
                for concurrency in levels:
                    for pair in pairs:
                        row = measure(
                            pair,
                            payload,
                            concurrency,
                            servers=servers,
                            certificates=certificates,
                            seconds=args.seconds,
                        )
                        rows.append(row)
                        print(
                            f"  {payload} {pair[0]} c={concurrency}: {row.result.rate:,.0f}/s, "
                            f"server {row.server_us():.0f} µs, client {row.client_us():.0f} µs, "
                            f"load {row.load}",
                            flush=True,
                        )
            print_table(rows)
        finally:
            for process, _ in servers.values():
                process.stop()


if __name__ == "__main__":
    main()
