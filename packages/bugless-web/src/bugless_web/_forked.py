"""What runs in the processes a ``--workers N`` parent forks: a worker, the metrics server.

Apart from :mod:`bugless_web.workers` (the parent's supervision) because
these run in another process than the code around them: each resets what
the fork copied (signal handlers and mask, descriptors of the parent's)
before it does anything else, and ends with :func:`os._exit`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import NoReturn

from bugless_core import logs
from bugless_core.metrics_endpoint import MetricsEndpoint
from bugless_core.parent_death import signal_on_parent_death
from bugless_web.server import StartupSignals, serve
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")

#: What the parent passes on to its workers.
FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT})
#: What the parent blocks and waits for (a stop, or a child's exit); a
#: forked process unblocks them once its handlers are in place.
WATCHED = FORWARDED | {signal.SIGCHLD}


def run_worker(
    settings: WebSettings,
    listener: socket.socket,
    endpoint: MetricsEndpoint | None,
    index: int,
    inherited: list[int],
    *,
    parent: int,
    ready: int,
) -> NoReturn:  # pragma: no cover - runs in the forked worker
    """The forked worker ``index``: serve until stopped, then exit with its status.

    ``inherited``: the parent's descriptors this worker must not hold open
    (the metrics server's stop pipe: it stops when the parent closes it; the
    other workers' ready pipes). ``ready``: where it says it serves.
    When ``parent`` dies, however it dies (SIGKILL, the OOM killer), the
    worker is sent SIGTERM and drains: an orphan would serve on, unsupervised,
    holding the port that a restarted parent needs.
    """
    status = 0
    try:
        # A signal held by the parent's mask since the fork is recorded now
        # and handled once the server can drain (StartupSignals).
        early = StartupSignals()
        early.install()
        if signal_on_parent_death(signal.SIGTERM) and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)  # it died before that took effect
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
        for descriptor in inherited:
            os.close(descriptor)
        logs.set_worker(index)
        parent_port = None
        if endpoint is not None:
            parent_port = endpoint.port
            endpoint.close_inherited()
        status = serve(
            settings,
            listener,
            parent_metrics_port=parent_port,
            early_signals=early,
            ready_pipe=ready,
        )
    except BaseException:
        _log.exception("web worker %d (pid %d) failed", index, os.getpid())
        status = 1
    finally:
        logging.shutdown()
    os._exit(status)


def run_metrics_server(
    endpoint: MetricsEndpoint, listener: socket.socket, stop: int
) -> NoReturn:  # pragma: no cover - runs in the forked metrics server
    """Serve ``/metrics`` of the workers' sum until ``stop`` (a pipe's read end) closes.

    It ignores SIGTERM and SIGINT, so that a signal sent to the whole
    process group (Ctrl-C in a terminal, systemd's control-group stop) does
    not end the scrapes while the workers drain; the parent closes the pipe
    after the last worker, and its death closes it too, so none outlives it.
    """
    status = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
        # Else the web's port would take connections no worker accepts
        # until this process ends, after the workers have drained.
        listener.close()
        endpoint.run()
        while os.read(stop, 1):
            pass
        endpoint.stop_blocking()
    except BaseException:
        _log.exception("the metrics server (pid %d) failed", os.getpid())
        status = 1
    finally:
        logging.shutdown()
    os._exit(status)


__all__ = ["FORWARDED", "WATCHED", "run_metrics_server", "run_worker"]
