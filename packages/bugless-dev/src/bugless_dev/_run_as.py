"""Running a subprocess as the system user PostgreSQL runs as (standard library only).

Its own module so that the throwaway server's watchdog
(:mod:`bugless_dev._postgres_watchdog`), a process that lives as long as each
test session, imports nothing else: a few MB rather than the ~50 MB of the
gRPC client and generated messages :mod:`bugless_dev.postgres` brings in.
"""

from __future__ import annotations

from typing import Any


def run_as_kwargs(user: str | None) -> dict[str, Any]:
    """``user``/``group``/``extra_groups`` for :mod:`subprocess`, to run as ``user``.

    The group matters as much as the user: run with root's groups, the server
    would be judged by the *group* bits of root-owned directories (often none)
    instead of the ``o+x`` it was given, and would keep root's group rights.

    Returns:
        Keyword arguments for :func:`subprocess.run` or :class:`subprocess.Popen`;
        empty when ``user`` is None (run as the caller).
    """
    if user is None:
        return {}
    import pwd  # noqa: PLC0415 - POSIX only

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
