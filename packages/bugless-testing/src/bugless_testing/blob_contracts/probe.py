"""Stream one large blob through a blob store in a fresh process: speed and peak RSS.

    python -m bugless_testing.blob_contracts.probe --size-mib 200

The store is chosen and configured from the environment (``BUGLESS_BLOB_STORE``
and the store's own ``BUGLESS_*`` settings) through the installed plugins,
exactly as a service opens it. The process writes the blob from generated
chunks (never holding it), reads it back while hashing it, deletes it, and
prints one JSON object: seconds up and down, the peak resident set size of the
whole process (``VmHWM``) and the peak before the transfer started. A
fresh process is what makes the peak mean something: nothing else ran in it.

The store tests assert that the peak stays far below the blob's size;
``bench/blobs.py`` prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Self

from bugless_core.blobs import connect_blob_store
from bugless_core.plugins import load_plugins

MIB = 1024 * 1024
_BLOCKS = 16


@dataclass(frozen=True)
class ProbeResult:
    """What one probe run measured.

    Attributes:
        store: The store's name.
        size: Bytes written and read back.
        up_seconds: Time of the put.
        down_seconds: Time to read every byte back.
        baseline_rss: RSS (bytes) after connecting and a 1 MiB warm-up,
            right before the large transfer.
        transfer_peak_rss: Highest RSS sampled (every few milliseconds)
            while the blob went up and down.
        peak_rss: Peak RSS of the process over its whole life (``VmHWM``,
            imports included).
    """

    store: str
    size: int
    up_seconds: float
    down_seconds: float
    baseline_rss: int
    transfer_peak_rss: int
    peak_rss: int

    @property
    def transfer_growth(self) -> int:
        """How much the transfer added to the process: the figure that must stay small."""
        return self.transfer_peak_rss - self.baseline_rss

    @property
    def up_mib_per_second(self) -> float:
        """Upload throughput."""
        return self.size / MIB / self.up_seconds

    @property
    def down_mib_per_second(self) -> float:
        """Download throughput."""
        return self.size / MIB / self.down_seconds


def _peak_rss() -> int:
    """The process's RSS high-water mark (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over from the parent across fork and
    exec, so a probe started by a large pytest process would report the
    parent's peak.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _current_rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class _RssSampler:
    """The highest RSS seen while it runs, sampled from a thread every few ms.

    ``VmHWM`` is the peak of the whole life, imports included; this is the
    peak of the transfer alone.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.peak = _current_rss()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, _current_rss())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_rss())


async def _generated(size: int, chunk_size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of incompressible content no earlier run wrote, made as it goes.

    A random header makes the content unique (so the store really writes it);
    the rest cycles through a few random blocks, so generating it costs
    nothing next to storing it, and no chunk compresses.
    """
    blocks = [os.urandom(chunk_size) for _ in range(_BLOCKS)]
    header = os.urandom(min(64, size))
    yield header
    sent = len(header)
    index = 0
    while sent < size:
        chunk = blocks[index % _BLOCKS][: size - sent]
        index += 1
        sent += len(chunk)
        yield chunk


async def _probe(size: int, chunk_size: int, environ: Mapping[str, str]) -> ProbeResult:
    plugins = load_plugins()
    store = await connect_blob_store(plugins.blob_stores, environ)
    try:
        warm = await store.put(_generated(MIB, chunk_size))
        async for _ in await store.open(warm.sha256):
            pass
        await store.delete(warm.sha256)
        gc.collect()
        baseline = _current_rss()
        with _RssSampler() as sampler:
            started = time.perf_counter()
            ref = await store.put(_generated(size, chunk_size))
            uploaded = time.perf_counter()
            digest = hashlib.sha256()
            received = 0
            async with await store.open(ref.sha256) as reader:
                async for chunk in reader:
                    digest.update(chunk)
                    received += len(chunk)
            downloaded = time.perf_counter()
        if (digest.hexdigest(), received) != (ref.sha256, ref.size):
            msg = f"read back {received} bytes hashing to {digest.hexdigest()}, stored {ref}"
            raise AssertionError(msg)
        await store.delete(ref.sha256)
        return ProbeResult(
            store=store.name,
            size=size,
            up_seconds=uploaded - started,
            down_seconds=downloaded - uploaded,
            baseline_rss=baseline,
            transfer_peak_rss=sampler.peak,
            peak_rss=_peak_rss(),
        )
    finally:
        await store.close()


def run_probe(
    environ: Mapping[str, str], size: int, *, chunk_size: int = 256 * 1024, timeout: float = 600
) -> ProbeResult:
    """Run the probe in a fresh Python process with ``environ``; return what it measured.

    Raises:
        RuntimeError: the probe failed; the message has its output.
    """
    command = [
        sys.executable,
        "-m",
        __name__,
        "--size",
        str(size),
        "--chunk-size",
        str(chunk_size),
    ]
    done = subprocess.run(
        command, env=dict(environ), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        msg = f"the blob probe failed ({done.returncode}): {done.stdout}\n{done.stderr[-4000:]}"
        raise RuntimeError(msg)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return ProbeResult(**data)


def main() -> None:
    """Command line entry: run one probe in this process and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, help="bytes to stream")
    parser.add_argument("--size-mib", type=int, default=200, help="MiB to stream (default 200)")
    parser.add_argument("--chunk-size", type=int, default=256 * 1024, help="bytes per chunk sent")
    args = parser.parse_args()
    size = args.size if args.size is not None else args.size_mib * MIB
    result = asyncio.run(_probe(size, args.chunk_size, os.environ))
    print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
