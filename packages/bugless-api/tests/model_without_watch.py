"""``bugless model serve`` on a backend that cannot watch: the PostgreSQL one, less ``watch``.

A backend declares what it can (``ModelBackend.capabilities``); one without
``Capability.WATCH`` (a third-party backend, say) has the Model answer Watch
UNIMPLEMENTED with reason CAPABILITY_MISSING. Everything else is the real
server on the real database. Run as ``python model_without_watch.py model serve ...``.
"""

from __future__ import annotations

from bugless_core.cli import main
from bugless_core.model.backend import Capability
from bugless_model_postgres.backend import PostgresBackend

if __name__ == "__main__":
    PostgresBackend.capabilities = PostgresBackend.capabilities - {Capability.WATCH}
    main()
