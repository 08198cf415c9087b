"""Throttling failed password attempts (and device-login starts), shared by every replica.

The lockout policy (token buckets: ``limit`` failures, refilled evenly over
``window_seconds``; only failures take a token, so typing one's password
right is never slowed down):

* **per (username, client address)**, ``per_user_address_limit`` (10): holds
  guessing at one account from one place. Tripping it refuses only that
  pair: the same person signing in from anywhere else is not affected, which
  is what keeps one remote address from locking a user out.
* **per username over all addresses**, ``per_user_limit`` (100): bounds
  distributed guessing at one account. It must be larger than the pair
  limit, so one address can never trip it (an address that is refused takes
  no more tokens); holding a user out this way takes ``per_user_limit /
  per_user_address_limit`` addresses guessing at once, and lasts only while
  they keep going.
* **per client address**, ``per_address_limit`` (100): stops one address
  spraying a common password over many accounts.

An address is counted by the network one party holds: an IPv6 address by
its ``/64`` (one host or household is handed a whole ``/64`` and may use any
of its 2**64 addresses), an IPv4-mapped IPv6 address as its IPv4 address
(:func:`address_key`). Keyed by the exact address, one IPv6 host could
guess at a person from as many addresses as it liked, so it alone could
empty that person's ``per_user_limit`` bucket and hold them out, and spray
accounts past ``per_address_limit``.

A tripped bucket is checked *before* the password is verified, so a
throttled guess costs no argon2 time and reveals nothing about the password,
and the refusal is the same whether the account exists or not. A success
refills the (username, address) bucket: the person who finally typed it
right starts afresh there.

The buckets live in the Authenticator's database (table ``login_throttle``),
not in a replica's memory, so N replicas enforce the limits once, not N
times, and a restart forgets nothing. Each update is one atomic
``INSERT ... ON CONFLICT`` computed with the database's clock.
"""

from __future__ import annotations

import ipaddress
import math
import time

from bugless_auth.settings import ThrottleSettings
from bugless_auth.store import IdentityStore
from bugless_core.errors import ResourceExhausted
from bugless_core.usernames import username_key

#: How often one replica deletes buckets that have refilled (at most).
_PURGE_EVERY_SECONDS = 60.0

_CURRENT = """
SELECT bucket,
       tokens + extract(epoch FROM clock_timestamp() - updated_at)::float8 * rate AS tokens,
       rate
FROM login_throttle
JOIN unnest($1::text[], $2::float8[]) AS wanted (name, rate) ON bucket = name
"""
_TAKE = """
INSERT INTO login_throttle AS t (bucket, tokens, updated_at)
VALUES ($1, $2::float8 - 1, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    tokens = greatest(0, least(
        $2::float8,
        t.tokens + extract(epoch FROM clock_timestamp() - t.updated_at)::float8 * $3::float8
    ) - 1),
    updated_at = clock_timestamp()
"""
_REFILL = "DELETE FROM login_throttle WHERE bucket = $1"
_PURGE = """
DELETE FROM login_throttle
WHERE updated_at < clock_timestamp() - $1::float8 * INTERVAL '1 second'
"""


#: Prefix length an IPv6 address is counted by (what one party holds).
IPV6_PREFIX = 64
#: Device logins one client network may start per throttle window. Starting
#: one needs no account; the Authenticator holds a fixed number pending for
#: everybody (``bugless_auth.people.MAX_PENDING_DEVICE_LOGINS``).
DEVICE_STARTS_PER_WINDOW = 10


def address_key(address: str) -> str:
    """The network ``address`` is counted by: an IPv6 ``/64``, or the address itself.

    ``2001:db8:1:2:aaaa::1`` and ``2001:db8:1:2::7`` are both ``2001:db8:1:2::/64``;
    ``::ffff:192.0.2.1`` is ``192.0.2.1``; an IPv4 address, or anything that is
    not an IP address (a host name, empty), is kept as it is.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class LoginThrottle:
    """The three buckets of the lockout policy, kept in the Authenticator's database."""

    def __init__(self, settings: ThrottleSettings, store: IdentityStore) -> None:
        """Apply ``settings`` to the buckets in ``store``'s schema."""
        self._settings = settings
        self._store = store
        self._next_purge = 0.0

    def _buckets(self, username: str, address: str) -> list[tuple[str, float]]:
        """``(bucket, limit)`` of an attempt; no address means no address buckets."""
        user = username_key(username)
        s = self._settings
        buckets = [(f"user:{user}", float(s.per_user_limit))]
        address = address_key(address)
        if address:
            buckets.append((f"pair:{user}\n{address}", float(s.per_user_address_limit)))
            buckets.append((f"address:{address}", float(s.per_address_limit)))
        return buckets

    async def check(self, username: str, address: str) -> None:
        """Refuse the attempt if any of its buckets is empty.

        Raises:
            ResourceExhausted: with ``retry_after`` (seconds until one more
                attempt may be made); the message is the same whether the
                account exists or not.
        """
        buckets = self._buckets(username, address)
        window = self._settings.window_seconds
        names = [b for b, _ in buckets]
        rates = [limit / window for _, limit in buckets]
        rows = await self._store.run(
            lambda conn: conn.fetch(_CURRENT, names, rates), transaction=False
        )
        wait = 0.0
        for row in rows:
            if row["tokens"] < 1.0:
                wait = max(wait, (1.0 - row["tokens"]) / row["rate"])
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed sign-in attempts; try again in {max(1, math.ceil(wait))} s",
                retry_after=wait,
            )

    async def failed(self, username: str, address: str) -> None:
        """Count a failed attempt against each of its buckets."""
        buckets = self._buckets(username, address)
        window = self._settings.window_seconds
        takes = [(bucket, limit, limit / window) for bucket, limit in buckets]
        await self._store.run(lambda conn: conn.executemany(_TAKE, takes))
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY_SECONDS
            await self._store.run(lambda conn: conn.execute(_PURGE, window), transaction=False)

    async def succeeded(self, username: str, address: str) -> None:
        """Refill the (username, address) bucket after a correct password."""
        if not address:
            return
        bucket = f"pair:{username_key(username)}\n{address_key(address)}"
        await self._store.run(lambda conn: conn.execute(_REFILL, bucket), transaction=False)

    def _device_bucket(self, address: str) -> tuple[str, float, float]:
        limit = float(DEVICE_STARTS_PER_WINDOW)
        return f"device:{address_key(address)}", limit, limit / self._settings.window_seconds

    async def check_device_start(self, address: str) -> None:
        """Refuse a device login from ``address`` once its network started its share.

        Counted by :func:`address_key`, so one IPv6 host cannot start one
        from each address of its ``/64`` until nobody else can start any.

        Raises:
            ResourceExhausted: with ``retry_after``.
        """
        if not address:
            return
        bucket, _, rate = self._device_bucket(address)
        rows = await self._store.run(
            lambda conn: conn.fetch(_CURRENT, [bucket], [rate]), transaction=False
        )
        if rows and rows[0]["tokens"] < 1.0:
            wait = (1.0 - rows[0]["tokens"]) / rate
            raise ResourceExhausted(
                f"too many device logins were started from this network; "
                f"try again in {max(1, math.ceil(wait))} s",
                retry_after=wait,
            )

    async def device_started(self, address: str) -> None:
        """Count a device login started from ``address`` against its network's bucket."""
        if address:
            bucket, limit, rate = self._device_bucket(address)
            await self._store.run(lambda conn: conn.execute(_TAKE, bucket, limit, rate))
