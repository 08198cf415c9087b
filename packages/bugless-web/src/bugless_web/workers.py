"""``bugless web serve --workers N``: the parent that forks the workers and keeps them running.

One uvicorn process uses one core; the parent forks N replicas that accept
on one socket (:func:`serve_workers`), passes SIGTERM/SIGINT on, starts a
crashed worker again, and gives up on a crash loop.

The parent runs no thread, ever: a fork copies only the thread that calls
it, so a lock another thread held at that moment (stderr's buffer while it
wrote a traceback, an import's module lock, a logging handler's) stays held
in the child for good, and the child hangs the first time it takes it. So
the parent waits for signals synchronously (:func:`signal.sigtimedwait`, the
signals blocked) instead of in handlers, and ``/metrics``, which
prometheus_client serves from threads, runs in a process of its own, forked
like a worker (:func:`bugless_web._forked.run_metrics_server`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from bugless_core.metrics_endpoint import MetricsEndpoint
from bugless_core.ready_file import write_ready_file
from bugless_web._forked import FORWARDED, WATCHED, run_metrics_server, run_worker
from bugless_web.metrics import worker_exited
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")

#: How long after a ``--workers N`` worker's crash it is started again; the
#: delay doubles for each earlier crash within :data:`CRASH_LOOP_SECONDS`
#: (0.1, 0.2, 0.4, 0.8, 1.6 s): a worker that dies at once again does not
#: spin a core, and one stray crash costs its share of the pod for 0.1 s.
RESTART_BACKOFF_SECONDS = 0.1
#: More than this many crashes (of workers or of the metrics server) within
#: :data:`CRASH_LOOP_SECONDS` are a crash loop: the parent stops every worker
#: and exits 1, leaving it to the supervisor (whose restart, Kubernetes'
#: CrashLoopBackOff, also shows).
CRASH_LOOP_CRASHES = 5
#: The window :data:`CRASH_LOOP_CRASHES` counts in.
CRASH_LOOP_SECONDS = 60.0
#: A worker not serving this long after its fork is logged (a WARNING, then
#: one a minute until it serves): it takes no connection meanwhile, so the pod
#: serves on fewer cores than it was given, which no probe shows (the other
#: workers answer ``/readyz``).
START_WARNING_SECONDS = 30.0
#: How often a worker still not serving is logged again.
_START_REMINDER_SECONDS = 60.0
#: ``si_code`` of a signal the kernel sent (Linux): from a terminal, to its
#: whole foreground process group, the workers included.
_SI_KERNEL = 0x80
#: How long the metrics server gets to stop once the last worker has.
METRICS_STOP_SECONDS = 5.0
#: The longest the parent waits for a signal before it looks again: only a
#: bound, in case a child's exit came without a SIGCHLD it could wait for.
_LONGEST_WAIT_SECONDS = 1.0
#: The same while a worker has not said it serves (the ready file waits on it).
_STARTING_WAIT_SECONDS = 0.05
#: The number the metrics server goes by where workers go by theirs.
_METRICS_SERVER = -1


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
    SIGTERM/SIGINT on to every worker and waits for them. A signal that
    arrives while the parent is still forking waits until every worker can
    receive it, and one that reaches a worker before it serves is kept for
    the moment it does (:class:`bugless_web.server.StartupSignals`).

    A worker that crashes (killed by a signal: the OOM killer, a segfault in
    a C extension; or exits non-zero, as uvicorn does (3) when the
    application's start-up fails; or exits with 0 before it served, as
    ``os._exit(0)`` in a library's at-fork handler would; or could not be
    forked) is started
    again under the same number, so that one bad request does not take the
    pod's whole web tier down: the others serve meanwhile, and the parent
    keeps the socket open for the new one. The restart waits
    :data:`RESTART_BACKOFF_SECONDS`, doubled for each earlier crash of the
    last :data:`CRASH_LOOP_SECONDS`; more than :data:`CRASH_LOOP_CRASHES`
    crashes in that window are a crash loop that restarting will not mend:
    the parent then stops the others and exits 1, so that the supervisor
    (Kubernetes, systemd) sees it and backs off in its turn. A worker that
    exits 0 by itself after it served (it was sent SIGTERM alone, and
    drained) is not started again.

    The exit status says how the stop went: 0 when it was asked for
    (SIGTERM/SIGINT) and every worker that was running then stopped with 0,
    even if a worker crashed just before or while the others drained (a
    crash is logged, as it is while serving, and a rolling update is no
    failure); a worker's own non-zero status when it reported one while
    stopping (1, :data:`~bugless_core.exit_status.EXIT_CUT_AT_SIGNAL`: a
    second signal cut its requests); 1 after a crash loop.

    With ``--metrics-port`` a process of the parent's serves ``/metrics``:
    the merge of the workers' values (sums; the connection windows'
    minimum), which they keep in files of ``metrics_directory``
    (:func:`bugless_web.metrics.prepare_workers`, called before anything
    created a metric). The port is bound before the fork (:func:`bind_metrics`);
    the metrics server is started again if it crashes, and stopped after the
    last worker. A worker that exits leaves its counters in the sum and takes
    its gauges with it (:func:`bugless_web.metrics.worker_exited`); the one
    started in its place writes files of its own.

    The ready file (``--ready-file``) is the parent's: written, with its pid,
    once every worker has said it serves, so that whoever waits for it (a
    test, a benchmark, a start-up probe) finds all N serving, not the first.

    Args:
        settings: Each worker's settings.
        listener: The bound, listening socket the workers share.
        workers: How many processes (2 or more).
        metrics: The bound ``/metrics`` of the sum (:func:`bind_metrics`).
        metrics_directory: Where the workers keep their metrics; ``None``
            when ``settings`` serve none.
    """
    # Inherited SIG_IGN would make the kernel reap the workers unseen.
    previous_chld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    supervisor = _Supervisor(settings, listener, workers, metrics, metrics_directory)
    try:
        return supervisor.run()
    finally:
        supervisor.stop_what_is_left()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        signal.signal(signal.SIGCHLD, previous_chld)


@dataclasses.dataclass
class _Starting:
    """A worker that has not said it serves yet.

    Attributes:
        index: Its number.
        ready: The read end of its pipe (non-blocking): it writes a byte once
            it listens (:class:`bugless_web.server.DrainingServer`).
        forked: When it was forked (:func:`time.monotonic`).
        logged: When it was last logged as not serving yet; None: never.
    """

    index: int
    ready: int
    forked: float
    logged: float | None = None


class _Supervisor:
    """The parent's state: its children, the restarts due, the crashes counted, the stop."""

    def __init__(
        self,
        settings: WebSettings,
        listener: socket.socket,
        workers: int,
        metrics: MetricsEndpoint | None,
        metrics_directory: Path | None,
    ) -> None:
        self._settings = settings
        self._listener = listener
        self._metrics = metrics
        self._metrics_directory = metrics_directory
        # Each live worker's number (what its log records say as ``worker``), by pid.
        self._workers: dict[int, int] = {}
        # Each worker's latest pid, by its number (0: never forked).
        self._pids = [0] * workers
        self._metrics_pid: int | None = None
        # The metrics server stops when this, its pipe's write end, closes.
        self._metrics_pipe: int | None = None
        # When each worker (or _METRICS_SERVER) is to be started again, by number.
        self._due: dict[int, float] = {}
        self._crashes: collections.deque[float] = collections.deque()
        # The signal that asked for the stop; the workers that were sent it.
        self._stopping: int | None = None
        self._signalled: set[int] = set()
        # The workers that have not said they serve yet, by pid.
        self._starting: dict[int, _Starting] = {}
        # The numbers of the workers that have served; once all have, the
        # ready file is written (then None).
        self._not_yet_served: set[int] | None = set(range(workers))
        self._status = 0

    def run(self) -> int:
        """Start everything, keep it running until it stops; the exit status."""
        for index in range(len(self._pids)):
            self._start_worker(index)
        if self._metrics is not None:
            self._start_metrics_server()
        _log.info(
            "started %d web workers: %s",
            len(self._pids),
            self._pids,
            extra={
                "metrics_port": self._metrics.port if self._metrics is not None else None,
                "metrics_pid": self._metrics_pid,
                "worker_pids": self._pids,
            },
        )
        while True:
            # A stop that came while the parent was busy (or held) comes
            # before the exits that came meanwhile: those are not restarted.
            stop = signal.sigtimedwait(FORWARDED, 0)
            if stop is not None:
                self._stop(stop.si_signo, to_group=stop.si_code == _SI_KERNEL)
            self._reap_exited()
            if not self._workers and not any(n != _METRICS_SERVER for n in self._due):
                break
            self._check_starting()
            self._start_due()
            received = signal.sigtimedwait(WATCHED, self._wait_seconds())
            if received is not None and received.si_signo in FORWARDED:
                self._stop(received.si_signo, to_group=received.si_code == _SI_KERNEL)
        self._listener.close()
        self._stop_metrics_server()
        if self._metrics_directory is not None:
            shutil.rmtree(self._metrics_directory, ignore_errors=True)
        _log.info("web workers stopped; exiting with %d", self._status)
        return self._status

    def stop_what_is_left(self) -> None:
        """After a failure of the parent itself: stop and reap every child, leaving no orphan."""
        if not self._workers and self._metrics_pid is None:
            return
        _log.error("the web workers' parent failed; stopping its workers")
        for pid in [*self._workers, *([self._metrics_pid] if self._metrics_pid else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self._metrics_pipe is not None:
            os.close(self._metrics_pipe)
            self._metrics_pipe = None
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitpid(-1, 0)

    def _start_worker(self, index: int) -> None:
        parent = os.getpid()
        ready_read, ready_write = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(ready_read)
            os.close(ready_write)
            self._crashed(index, f"could not be forked ({exc.strerror or exc})", {})
            return
        if pid == 0:  # pragma: no cover - the worker; its exit ends this branch
            inherited = [ready_read, *(s.ready for s in self._starting.values())]
            if self._metrics_pipe is not None:
                inherited.append(self._metrics_pipe)
            run_worker(
                self._settings,
                self._listener,
                self._metrics,
                index,
                inherited,
                parent=parent,
                ready=ready_write,
            )
        os.close(ready_write)
        os.set_blocking(ready_read, False)
        self._starting[pid] = _Starting(index, ready_read, time.monotonic())
        self._workers[pid] = index
        self._pids[index] = pid

    def _check_starting(self) -> None:
        """Log a worker slow to serve, and when it serves after all."""
        now = time.monotonic()
        for pid, starting in list(self._starting.items()):
            try:
                said = os.read(starting.ready, 1)
            except BlockingIOError:
                since = now - starting.forked
                due = (
                    starting.forked + START_WARNING_SECONDS
                    if starting.logged is None
                    else starting.logged + _START_REMINDER_SECONDS
                )
                if now >= due and self._stopping is None:
                    starting.logged = now
                    _log.warning(
                        "web worker %d (pid %d) has not started serving %.0f s after it was "
                        "started; it takes no connection meanwhile",
                        starting.index,
                        pid,
                        since,
                        extra={"worker_pid": pid, "starting_seconds": round(since, 1)},
                    )
                continue
            self._forget_starting(pid)
            if said:
                self._served(starting.index)
            if said and starting.logged is not None:
                _log.info(
                    "web worker %d (pid %d) serves, %.0f s after it was started",
                    starting.index,
                    pid,
                    now - starting.forked,
                    extra={"worker_pid": pid, "starting_seconds": round(now - starting.forked, 1)},
                )

    def _served(self, index: int) -> None:
        """Worker ``index`` serves; the first time all have, say so (log, ready file)."""
        if self._not_yet_served is None:
            return
        self._not_yet_served.discard(index)
        if self._not_yet_served or self._stopping is not None:
            return
        self._not_yet_served = None
        port = int(self._listener.getsockname()[1])
        metrics_port = self._metrics.port if self._metrics is not None else None
        _log.info(
            "all %d web workers serve",
            len(self._pids),
            extra={"port": port, "metrics_port": metrics_port, "worker_pids": self._pids},
        )
        if self._settings.ready_file is not None:
            write_ready_file(self._settings.ready_file, port=port, metrics_port=metrics_port)

    def _forget_starting(self, pid: int) -> None:
        starting = self._starting.pop(pid, None)
        if starting is not None:
            os.close(starting.ready)

    def _start_metrics_server(self) -> None:
        assert self._metrics is not None
        stop_read, stop_write = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(stop_read)
            os.close(stop_write)
            self._crashed(_METRICS_SERVER, f"could not be forked ({exc.strerror or exc})", {})
            return
        if pid == 0:  # pragma: no cover - the metrics server; its exit ends this branch
            os.close(stop_write)
            for starting in self._starting.values():
                os.close(starting.ready)
            run_metrics_server(self._metrics, self._listener, stop_read)
        os.close(stop_read)
        self._metrics_pid, self._metrics_pipe = pid, stop_write

    def _start_due(self) -> None:
        now = time.monotonic()
        for index, due in sorted(self._due.items()):
            # A fork that failed may have ended in a crash loop, and the stop.
            if due > now or self._stopping is not None:
                continue
            del self._due[index]
            if index == _METRICS_SERVER:
                self._start_metrics_server()
                if self._metrics_pid is not None:
                    _log.info(
                        "started the metrics server again: pid %d",
                        self._metrics_pid,
                        extra={"metrics_pid": self._metrics_pid},
                    )
                continue
            before = self._pids[index]
            self._start_worker(index)
            if self._pids[index] != before:
                _log.info(
                    "started web worker %d again: pid %d",
                    index,
                    self._pids[index],
                    extra={"worker_pids": self._pids, "restarted_worker": index},
                )

    def _wait_seconds(self) -> float:
        # A worker says it serves through a pipe, which wakes no sigtimedwait.
        longest = _STARTING_WAIT_SECONDS if self._starting else _LONGEST_WAIT_SECONDS
        if not self._due:
            return longest
        return min(longest, max(0.0, min(self._due.values()) - time.monotonic()))

    def _reap_exited(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            self._exited(pid, os.waitstatus_to_exitcode(status))

    def _exited(self, pid: int, code: int) -> None:
        how = _exit_description(code)
        if pid == self._metrics_pid:
            self._metrics_pid = None
            if self._metrics_pipe is not None:
                os.close(self._metrics_pipe)
                self._metrics_pipe = None
            if self._stopping is None:
                facts = {"metrics_pid": pid, "exit_status": code}
                self._crashed(_METRICS_SERVER, f"(pid {pid}) {how}", facts)
            else:
                _log.error("the metrics server (pid %d) %s while stopping", pid, how)
            return
        index = self._workers.pop(pid, None)
        if index is None:
            return
        served = self._said_it_serves(pid)
        self._forget_starting(pid)
        if self._metrics_directory is not None:
            worker_exited(self._metrics_directory, pid)
        facts = {"worker_pid": pid, "exit_status": code, "exited_worker": index}
        if self._stopping is not None:
            self._exited_while_stopping(pid, index, code, facts)
        elif code == 0 and served:
            _log.info("web worker %d (pid %d) exited with 0; not started again", index, pid)
        elif code == 0:
            # Something ended it cleanly before it served (a failed start-up
            # of the application exits 3, a crash above; this is os._exit(0)
            # or a SystemExit(0) in a library's at-fork handler): the pod
            # would serve on fewer workers for good, and never be ready.
            self._crashed(index, f"(pid {pid}) exited with 0 before it served", facts)
        else:
            self._crashed(index, f"(pid {pid}) {how}", facts)

    def _said_it_serves(self, pid: int) -> bool:
        """Whether worker ``pid`` (just exited) said it serves, reading what it wrote last.

        A worker that served and then exited may have done both since the
        parent last read its pipe: what is in the pipe still counts (and
        counts for the ready file).
        """
        starting = self._starting.get(pid)
        if starting is None:
            return True
        try:
            said = os.read(starting.ready, 1)
        except BlockingIOError:
            return False
        if said:
            self._served(starting.index)
        return bool(said)

    def _exited_while_stopping(
        self, pid: int, index: int, code: int, facts: dict[str, int]
    ) -> None:
        how = _exit_description(code)
        stop = signal.Signals(self._stopping or signal.SIGTERM).name
        signalled = pid in self._signalled
        self._signalled.discard(pid)
        if not signalled:  # it had ended before the stop was passed on
            _log.error(
                "web worker %d (pid %d) %s; not started again: the server is stopping (%s)",
                index,
                pid,
                how,
                stop,
                extra=facts,
            )
        elif code == 0:
            _log.info("web worker %d (pid %d) stopped", index, pid, extra=facts)
        elif code > 0:
            self._status = self._status or code
            _log.error("web worker %d (pid %d) %s while stopping", index, pid, how, extra=facts)
        else:
            _log.error(
                "web worker %d (pid %d) %s while stopping; its requests still running were lost",
                index,
                pid,
                how,
                extra=facts,
            )

    def _crashed(self, index: int, how: str, facts: dict[str, int]) -> None:
        """Count a crash of worker ``index`` (or the metrics server): start it again, or stop."""
        name = "the metrics server" if index == _METRICS_SERVER else f"web worker {index}"
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes[0] <= now - CRASH_LOOP_SECONDS:
            self._crashes.popleft()
        crashes = len(self._crashes)
        if crashes > CRASH_LOOP_CRASHES:
            self._status = 1
            _log.error(
                "%s %s: %d crashes in the last %g s, a crash loop; stopping the others",
                name,
                how,
                crashes,
                CRASH_LOOP_SECONDS,
                extra={**facts, "crashes": crashes},
            )
            self._stop(signal.SIGTERM, crash_loop=True)
            return
        delay = RESTART_BACKOFF_SECONDS * 2 ** (crashes - 1)
        self._due[index] = now + delay
        _log.error(
            "%s %s; starting it again in %g s",
            name,
            how,
            delay,
            extra={**facts, "crashes": crashes},
        )

    def _stop(self, sig: int, *, crash_loop: bool = False, to_group: bool = False) -> None:
        """Pass ``sig`` on to every worker; the first time, stop starting any.

        ``to_group``: the kernel sent it to the whole process group (a
        terminal's Ctrl-C), so every worker has it already; a second copy
        from here would be a second signal, which cuts a worker's requests
        instead of letting them drain.
        """
        name = signal.Signals(sig).name
        passed = "it reached them too" if to_group else "passing it on"

        if self._stopping is None:
            self._stopping = sig
            # Exits from before the stop was passed on are crashes, not part of it.
            self._reap_exited()
            self._due.clear()
            # The workers hold their copies: the socket closes when they
            # have drained, as it did before the parent kept one.
            self._listener.close()
            if not crash_loop:
                _log.info(
                    "%s: stopping web workers %s (%s)",
                    name,
                    sorted(self._workers),
                    passed,
                    extra={"worker_pids": sorted(self._workers)},
                )
        else:
            _log.warning("%s again: %s to web workers %s", name, passed, sorted(self._workers))
        for pid in list(self._workers):
            if not to_group:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            self._signalled.add(pid)

    def _stop_metrics_server(self) -> None:
        pid = self._metrics_pid
        if self._metrics_pipe is not None:
            os.close(self._metrics_pipe)
            self._metrics_pipe = None
        if self._metrics is not None:
            self._metrics.close_inherited()
        if pid is None:
            return
        deadline = time.monotonic() + METRICS_STOP_SECONDS
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                _log.warning(
                    "the metrics server (pid %d) did not stop within %g s; killing it",
                    pid,
                    METRICS_STOP_SECONDS,
                )
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            signal.sigtimedwait({signal.SIGCHLD}, 0.05)
        self._metrics_pid = None


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
    "METRICS_STOP_SECONDS",
    "RESTART_BACKOFF_SECONDS",
    "serve_workers",
]
