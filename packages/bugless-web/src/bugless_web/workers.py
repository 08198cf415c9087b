"""``bugless web serve --workers N``: the parent that forks the workers and keeps them running.

One uvicorn process uses one core; the parent forks N replicas that accept
on one socket (:func:`serve_workers`), passes SIGTERM/SIGINT on, starts a
crashed worker again, and gives up on a crash loop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from bugless_core import logs
from bugless_core.metrics_endpoint import MetricsEndpoint
from bugless_web.metrics import worker_exited
from bugless_web.server import serve
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")

#: How long after a ``--workers N`` worker's crash it is started again; the
#: delay doubles for each earlier crash within :data:`CRASH_LOOP_SECONDS`
#: (0.1, 0.2, 0.4, 0.8, 1.6 s): a worker that dies at once again does not
#: spin a core, and one stray crash costs its share of the pod for 0.1 s.
RESTART_BACKOFF_SECONDS = 0.1
#: More than this many worker crashes within :data:`CRASH_LOOP_SECONDS` are a
#: crash loop: the parent stops every worker and exits 1, leaving it to the
#: supervisor (whose restart, Kubernetes' CrashLoopBackOff, also shows).
CRASH_LOOP_CRASHES = 5
#: The window :data:`CRASH_LOOP_CRASHES` counts in.
CRASH_LOOP_SECONDS = 60.0
#: How often the parent looks for an exited worker while a restart waits.
_RESTART_POLL_SECONDS = 0.05
#: What the parent passes on to its workers.
_FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT})


def serve_workers(
    settings: WebSettings,
    listener: socket.socket,
    workers: int,
    *,
    metrics: MetricsEndpoint | None = None,
    metrics_directory: Path | None = None,
) -> int:
    """Run ``workers`` processes that all accept on ``listener``; the exit status.

    The web tier keeps nothing a request needs from another (sessions are
    signed cookies, every cache is a short per-process copy), so one machine
    serves pages on all of its cores by forking replicas that share the
    socket bound once before the fork: the kernel hands each new connection
    to whichever worker accepts first, and a busy or stalled worker leaves
    its connections to the others. Each worker is a whole replica (its own
    channels, caches, event loop, and drain on SIGTERM); the parent passes
    SIGTERM/SIGINT on to every worker and waits for them.

    A worker that crashes (killed by a signal: the OOM killer, a segfault in
    a C extension; or exits non-zero) is started again under the same
    number, so that one bad request does not take the pod's whole web tier
    down: the others serve meanwhile, and the parent keeps the socket open
    for the new one. The restart waits :data:`RESTART_BACKOFF_SECONDS`,
    doubled for each earlier crash of the last :data:`CRASH_LOOP_SECONDS`;
    more than :data:`CRASH_LOOP_CRASHES` crashes in that window are a crash
    loop that restarting will not mend: the parent then stops the others and
    exits 1, so that the supervisor (Kubernetes, systemd) sees it and backs
    off in its turn. A worker that exits 0 by itself (it was sent SIGTERM
    alone, and drained) is not started again.

    With ``--metrics-port`` the parent serves ``/metrics``: the merge of the
    workers' values (sums; the connection windows' minimum), which they keep
    in files of ``metrics_directory``
    (:func:`bugless_web.metrics.prepare_workers`, called before anything
    created a metric). The port is bound before the fork (:func:`bind_metrics`),
    so that each worker can name it in the ready file, and served once they
    are forked. A worker that exits leaves its counters in the sum and takes
    its gauges with it (:func:`bugless_web.metrics.worker_exited`); the one
    started in its place writes files of its own.

    Args:
        settings: Each worker's settings.
        listener: The bound, listening socket the workers share.
        workers: How many processes (2 or more).
        metrics: The bound ``/metrics`` of the sum (:func:`bind_metrics`).
        metrics_directory: Where the workers keep their metrics; ``None``
            when ``settings`` serve none.
    """
    endpoint = metrics
    # Each live worker's number (what its log records say as ``worker``), by pid.
    children: dict[int, int] = {}
    # Each worker's latest pid, by its number.
    numbered: list[int] = []
    stopping = False

    def start_worker(index: int) -> int:
        # Held until the pid is known, so that a SIGTERM arriving meanwhile
        # reaches the new worker too, and the worker cannot run the parent's
        # handler (which signals every worker) before it has reset it.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker; its exit ends this branch
                _run_worker(settings, listener, endpoint, index)
            children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        return pid

    numbered.extend(start_worker(index) for index in range(workers))
    if endpoint is not None:
        endpoint.run()
    _log.info(
        "started %d web workers: %s",
        workers,
        numbered,
        extra={
            "metrics_port": endpoint.port if endpoint is not None else None,
            "worker_pids": numbered,
        },
    )
    # A worker's number, by when it is to be started again.
    pending: dict[int, float] = {}
    crashes: collections.deque[float] = collections.deque()

    def forward(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            pending.clear()
            # The workers hold their copies: the socket closes when they
            # have drained, as it did before the parent kept one.
            listener.close()
        for child in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = False
    while children or pending:
        reaped = _reap(block=not pending)
        if reaped is None:
            if not pending:
                break
            now = time.monotonic()
            for index, due in list(pending.items()):
                if due <= now and not stopping:
                    del pending[index]
                    numbered[index] = start_worker(index)
                    _log.info(
                        "started web worker %d again: pid %d",
                        index,
                        numbered[index],
                        extra={"worker_pids": numbered, "restarted_worker": index},
                    )
            if pending:
                time.sleep(_RESTART_POLL_SECONDS)
            continue
        pid, status = reaped
        worker = children.pop(pid)
        if metrics_directory is not None:
            worker_exited(metrics_directory, pid)
        code = os.waitstatus_to_exitcode(status)
        how = _exit_description(code)
        facts = {"worker_pid": pid, "exit_status": code, "exited_worker": worker}
        if stopping or code == 0:
            if code != 0 and not failed:
                failed = True
                _log.error("web worker %d (pid %d) %s", worker, pid, how, extra=facts)
            elif code == 0 and not stopping:
                _log.info("web worker %d (pid %d) exited with 0; not started again", worker, pid)
            continue
        now = time.monotonic()
        crashes.append(now)
        while crashes[0] <= now - CRASH_LOOP_SECONDS:
            crashes.popleft()
        if len(crashes) > CRASH_LOOP_CRASHES:
            failed = True
            _log.error(
                "web worker %d (pid %d) %s: %d crashes in the last %g s, a crash loop; "
                "stopping the others",
                worker,
                pid,
                how,
                len(crashes),
                CRASH_LOOP_SECONDS,
                extra={**facts, "crashes": len(crashes)},
            )
            forward(signal.SIGTERM, None)
            continue
        delay = RESTART_BACKOFF_SECONDS * 2 ** (len(crashes) - 1)
        pending[worker] = now + delay
        _log.error(
            "web worker %d (pid %d) %s; starting it again in %g s",
            worker,
            pid,
            how,
            delay,
            extra={**facts, "crashes": len(crashes)},
        )
    listener.close()
    if endpoint is not None:
        endpoint.stop_blocking()
    if metrics_directory is not None:
        shutil.rmtree(metrics_directory, ignore_errors=True)
    return 1 if failed else 0


def _run_worker(
    settings: WebSettings,
    listener: socket.socket,
    endpoint: MetricsEndpoint | None,
    index: int,
) -> NoReturn:  # pragma: no cover - runs in the forked worker
    """The forked worker ``index``: serve until stopped, then exit with its status."""
    status = 0
    try:
        # A new process's handlers, not the parent's forward (then unblocked).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        logs.set_worker(index)
        parent_port = None
        if endpoint is not None:
            parent_port = endpoint.port
            endpoint.close_inherited()
        status = serve(settings, listener, parent_metrics_port=parent_port)
    except BaseException:
        _log.exception("web worker %d (pid %d) failed", index, os.getpid())
        status = 1
    finally:
        logging.shutdown()
    os._exit(status)


def _reap(*, block: bool) -> tuple[int, int] | None:
    """A worker that exited and its wait status; None if none has (or none is left)."""
    try:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    return (pid, status) if pid else None


def _exit_description(code: int) -> str:
    """``exited with N`` or ``was killed by SIGNAME``, from an exit code."""
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


__all__ = [
    "CRASH_LOOP_CRASHES",
    "CRASH_LOOP_SECONDS",
    "RESTART_BACKOFF_SECONDS",
    "serve_workers",
]
