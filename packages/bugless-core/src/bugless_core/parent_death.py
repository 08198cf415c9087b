"""A child process that ends with its parent: Linux' ``PR_SET_PDEATHSIG``.

A process forked or started by a supervisor of ours (the web tier's
``--workers`` parent, the dev stack) must not outlive it: an orphan keeps its
port, its connections and its share of the machine, and nobody will ever
stop it. The kernel sends the signal asked for here when the parent dies,
however it dies (SIGKILL, the OOM killer), which no handler in the parent
could do.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

#: ``prctl`` option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """Libc's ``prctl``, looked up on import (Linux only; None elsewhere).

    Looked up before any fork or exec, so that a child (a ``preexec_fn``
    running as another user, who may not read this Python's files) only
    calls what its parent prepared.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def signal_on_parent_death(signum: int) -> bool:
    """Have the kernel send this process ``signum`` when its parent dies; whether it will.

    It takes effect for the parent's death from now on: a caller that must
    not miss an earlier one compares :func:`os.getppid` with the parent it
    expects right after. Safe in a ``preexec_fn`` (one C call, no lock taken).
    The parent is, strictly, the thread that forked: a parent that forks from
    a thread that may end must not rely on it.
    """
    return _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, signum) == 0


__all__ = ["signal_on_parent_death"]
