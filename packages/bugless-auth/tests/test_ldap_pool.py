"""The LDAP service-account pool keeps no connection its operation closed (real slapd)."""

from __future__ import annotations

from typing import Any

import bonsai

from bugless_auth._ldap_pool import ServiceConnectionPool
from bugless_testing.slapd import READER_DN, READER_PASSWORD, Slapd


async def test_a_connection_its_operation_closed_is_not_handed_out_again(
    slapd_server: Slapd,
) -> None:
    """A paged search stopped early closes its connection; the next search gets an open one.

    Kept, it would fail the next search with ClosedConnection, taken for a
    server restart: every idle connection dropped and the search retried.
    """
    client = bonsai.LDAPClient(slapd_server.url)
    client.set_credentials("SIMPLE", user=READER_DN, password=READER_PASSWORD)
    pool = ServiceConnectionPool(client, size=2, connect_timeout=2)
    used: list[Any] = []

    async def kept(conn: Any) -> None:
        used.append(conn)

    async def closed(conn: Any) -> None:
        used.append(conn)
        conn.close()

    try:
        await pool.run(kept, acquire_timeout=2)
        await pool.run(kept, acquire_timeout=2)
        assert used[0] is used[1]  # an open connection is reused
        await pool.run(closed, acquire_timeout=2)
        assert used[2] is used[0]
        await pool.run(kept, acquire_timeout=2)
        assert used[3] is not used[0]
        assert not used[3].closed
    finally:
        pool.close()
