"""``bugless dev``: every bugless service on one machine, on an embedded PostgreSQL.

The command lives in :mod:`bugless_core.dev.command`; the modules behind it
each do one job: the state directory (``_state``), PostgreSQL (``_postgres``),
the development certificates (``_pki``), child processes (``_processes``),
the start/stop order (``_stack``) and the demo data (``_demo``).
"""

from __future__ import annotations

from bugless_core.dev.command import dev_command

__all__ = ["dev_command"]
