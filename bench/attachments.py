"""Attachments: MB/s up and down through the web tier and the API, and peak RSS per process.

    python -m bench.attachments [--size-mib 100] [--runs 2]

Starts PostgreSQL, the Model (``database`` blob store, its default), the
Authenticator, ``bugless api serve`` and ``bugless web serve`` as real
processes (:mod:`bench._services`), then moves one file of ``--size-mib``
up and down, ``--runs`` times each way:

* **web**: an HTTP client streams the file as the body of
  ``POST /issues/N/attachments`` (what the page's script sends) and reads it
  back from ``GET /attachments/ID/NAME``;
* **api**: :class:`bugless_api.client.BuglessClient` ``attach`` (a file on
  disk, read in chunks) and ``download_attachment`` (written to disk).

The peak resident memory of the Model, the web tier and the API during the
transfers is read from ``/proc`` (peak reset before each transfer). Every
process runs on this machine: the speeds include PostgreSQL's, the Model's,
the frontend's and the client's CPU on the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from bench._services import BenchStack, CpuMeter, load_average
from bugless_api.client import BuglessClient
from bugless_core.clients import acting_as, call
from bugless_proto import v1
from bugless_testing.rss import MIB, peak_rss, reset_peak, rss

USER = "bench-attacher"
PASSWORD = "bench-password-0123"
BLOCK = bytes(range(256)) * 4096  # 1 MiB


async def _blocks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // MIB):
        yield BLOCK


class Peaks:
    """Peak RSS of the measured processes over one round, and their CPU per direction."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {n: p for n, p in pids.items() if n != "postgres"}
        self.before = {name: rss(pid) for name, pid in self.pids.items()}
        for pid in self.pids.values():
            reset_peak(pid)
        self.cpu = CpuMeter(pids)
        self.cpu.start()
        self.up_cpu: dict[str, float] = {}

    def uploaded(self) -> None:
        """The upload ended: its CPU seconds are kept, the download's start."""
        self.up_cpu = self.cpu.stop()
        self.cpu.start()

    def read(self) -> dict[str, int]:
        return {name: peak_rss(pid) for name, pid in self.pids.items()}


async def _issue(bench: BenchStack, user_id: str) -> int:
    channel = bench.stack.model.channel()
    # The Model believes only an identity assertion (as the frontends send).
    try:
        with acting_as(bench.stack.assertion_for(user_id, permissions=["admin"])):
            return await _create_issue(v1.ModelStub(channel), user_id)
    finally:
        channel.close()


async def _create_issue(model: v1.ModelStub, user_id: str) -> int:
    caller = v1.Caller(user_id=user_id, admin=True)
    component = await call(
        model.create_component,
        v1.CreateComponentRequest(caller=caller, name=f"Bench files {time.time_ns()}"),
    )
    issue = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=caller,
            fields=v1.IssueFields(title="bench attachments", component_id=component.id),
        ),
    )
    return issue.id


async def _web_round(url: str, issue_id: int, size: int, pids: dict[str, int]) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=600, follow_redirects=True) as client:
        page = await client.get("/signin")
        token = page.text.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
        home = await client.post(
            "/signin", data={"username": USER, "password": PASSWORD, "_csrf": token, "next": "/"}
        )
        csrf = home.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        peaks = Peaks(pids)
        started = time.perf_counter()
        response = await client.post(
            f"/issues/{issue_id}/attachments",
            content=_blocks(size),
            headers={"x-csrf-token": csrf, "x-file-name": "big.bin", "content-length": str(size)},
        )
        up = time.perf_counter() - started
        peaks.uploaded()
        response.raise_for_status()
        link = response.json()["url"]
        started = time.perf_counter()
        received = 0
        async with client.stream("GET", link) as download:
            async for chunk in download.aiter_bytes():
                received += len(chunk)
        down = time.perf_counter() - started
        assert received == size, received
        return _figures(size, up, down, peaks)


def _figures(size: int, up: float, down: float, peaks: Peaks) -> dict[str, float]:
    figures = {"up": size / MIB / up, "down": size / MIB / down}
    down_cpu = peaks.cpu.stop()
    for name in down_cpu:
        figures[f"{name}_up_cpu"] = peaks.up_cpu[name] * 1000 / (size / MIB)
        figures[f"{name}_down_cpu"] = down_cpu[name] * 1000 / (size / MIB)
    for name, peak in peaks.read().items():
        figures[f"{name}_peak"] = peak / MIB
        figures[f"{name}_growth"] = (peak - peaks.before[name]) / MIB
    return figures


async def _api_round(
    client: BuglessClient, issue_id: int, source: Path, size: int, pids: dict[str, int]
) -> dict[str, float]:
    peaks = Peaks(pids)
    started = time.perf_counter()
    done = await client.attach(issue_id, source, name=f"big-{time.time_ns()}.bin")
    up = time.perf_counter() - started
    peaks.uploaded()
    assert done.attachment is not None
    target = source.with_name("downloaded.bin")
    started = time.perf_counter()
    await client.download_attachment(done.attachment.id, target)
    down = time.perf_counter() - started
    got = await client.get_attachment(done.attachment.id)
    assert got.size == size
    await asyncio.to_thread(os.unlink, target)
    return _figures(size, up, down, peaks)


def _row(path: str, size_mib: int, results: list[dict[str, float]], names: list[str]) -> str:
    up = statistics.median(r["up"] for r in results)
    down = statistics.median(r["down"] for r in results)
    cells = [
        f"{max(r[f'{n}_peak'] for r in results):.0f} "
        f"(+{max(r[f'{n}_growth'] for r in results):.0f})"
        for n in names
    ]
    cpu = [
        " · ".join(
            f"{statistics.median(r[f'{n}_{way}_cpu'] for r in results):.1f}"
            for n in (*names, "postgres")
        )
        for way in ("up", "down")
    ]
    return (
        f"| {path} | {size_mib} | {up:.0f} | {down:.0f} | {cpu[0]} | {cpu[1]} | "
        + " | ".join(cells)
        + f" | {load_average()} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    size = args.size_mib * MIB
    bench = BenchStack.start()
    try:
        user_id = str(bench.stack.add_user(USER, PASSWORD, admin=True)["user_id"])
        address, bot = bench.start_api()
        web_url = bench.start_web()
        pids = bench.service_pids()
        measured = {name: pids[name] for name in ("model", "web", "api", "postgres")}
        # An issue per round: several rounds of a large file on one issue would
        # pass the per-issue limit (1 GiB by default) and be refused.
        issue_ids = [asyncio.run(_issue(bench, user_id)) for _ in range(2 * args.runs)]
        web_results = [
            asyncio.run(_web_round(web_url, issue_ids[n], size, measured)) for n in range(args.runs)
        ]
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / "big.bin"
            with source.open("wb") as out:
                for _ in range(args.size_mib):
                    out.write(BLOCK)

            async def api_rounds() -> list[dict[str, float]]:
                async with BuglessClient(
                    address.authority, cert=bot.cert, key=bot.key,
                    ca=bench.stack.pki.ca_file, timeout=600,
                ) as client:  # fmt: skip
                    return [
                        await _api_round(client, issue_ids[args.runs + n], source, size, measured)
                        for n in range(args.runs)
                    ]

            api_results = asyncio.run(api_rounds())
        names = ["model", "web", "api"]
        print("CPU ms per MiB: model · web · api · postgres; peak RSS MiB (+ growth)")
        heads = " | ".join(f"{n} RSS" for n in names)
        print(
            f"| path | MiB | up MiB/s | down MiB/s | CPU ms/MiB up | CPU ms/MiB down | {heads} "
            "| load |"
        )
        print("|---|---|---|---|---|---|" + "---|" * len(names) + "---|")
        print(_row("web", args.size_mib, web_results, names))
        print(_row("api", args.size_mib, api_results, names))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
