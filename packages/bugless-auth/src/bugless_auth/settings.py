"""The Authenticator's settings: one typed dataclass, filled from flags and env vars."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from bugless_core.migrations import quote_schema


@dataclasses.dataclass(frozen=True, kw_only=True)
class PasswordHashing:
    """argon2id cost parameters for the local store.

    The defaults are RFC 9106's "second recommended option" scaled to a server
    answering logins interactively (~50 ms on one core). Tests lower them; a
    hash made with other parameters is re-hashed on the next successful login.

    Attributes:
        time_cost: Passes over memory.
        memory_kib: Memory per hash, in KiB.
        parallelism: Lanes.
    """

    time_cost: int = 3
    memory_kib: int = 65_536
    parallelism: int = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThrottleSettings:
    """How many failed password attempts are tolerated before callers must wait.

    Each key (a username, a client address) has a bucket of ``*_limit``
    attempts that refills evenly over ``window_seconds``: a burst of failures
    trips it at once, while a steady trickle is held to ``limit`` per window.
    Buckets live in each replica's memory, so with N replicas an attacker that
    spreads attempts gets at most N times the limit.

    Attributes:
        per_user_limit: Failed attempts per username per window.
        per_address_limit: Failed attempts per client address per window
            (higher: many people can share a NAT address).
        window_seconds: The window the limits refill over.
        max_tracked_keys: Bound on remembered buckets; the least recently
            touched are forgotten first (they are the ones nearest full).
    """

    per_user_limit: int = 10
    per_address_limit: int = 100
    window_seconds: float = 300.0
    max_tracked_keys: int = 100_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Everything ``bugless auth serve`` is configured with, field by field.

    Attributes:
        database_url: asyncpg DSN of the Authenticator's database.
        schema: PostgreSQL schema of its tables (its own, never the Model's).
        authenticators: Enabled backends, in the order password checks try them.
        authenticator_options: Per-backend options (``{"tls": {"mapping_file":
            "..."}}``), passed to each backend's ``open`` as strings.
        token_keys: Key files; the first signs new tokens, all verify (list an
            old key after the new one during a rotation, remove it once tokens
            signed by it have expired). PEM Ed25519 (EdDSA), a JWK JSON, or a
            shared secret of 32+ bytes (HS256).
        token_ttl_seconds: Lifetime of a session token.
        token_issuer: ``iss`` of issued tokens, checked on validation.
        cache_ttl_seconds: How long user records (and validated tokens) are
            served from memory before being re-read: the bound on how stale a
            rename or a disable can be on a replica that did not see it.
        cache_max_entries: Bound on cached users (each cache, LRU eviction).
        policy: Group to permissions, e.g. ``{"admins": ["admin"], "*":
            ["create_hotlist"]}``; ``None`` means the default (admins get admin).
        throttle: Failed-password throttling.
        hashing: argon2id parameters.
        min_password_length: Shortest password the local store accepts.
        pool_max_size: Database connections per replica.
    """

    database_url: str
    schema: str = "bugless_auth"
    authenticators: tuple[str, ...] = ("local",)
    authenticator_options: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    token_keys: tuple[Path, ...] = ()
    token_ttl_seconds: float = 12 * 3600.0
    token_issuer: str = "bugless-auth"
    cache_ttl_seconds: float = 30.0
    cache_max_entries: int = 100_000
    policy: Mapping[str, tuple[str, ...]] | None = None
    throttle: ThrottleSettings = dataclasses.field(default_factory=ThrottleSettings)
    hashing: PasswordHashing = dataclasses.field(default_factory=PasswordHashing)
    min_password_length: int = 8
    pool_max_size: int = 10

    def __post_init__(self) -> None:
        quote_schema(self.schema)
        if not self.authenticators:
            raise ValueError("authenticators: enable at least one (e.g. local)")
        if len(set(self.authenticators)) != len(self.authenticators):
            raise ValueError(f"authenticators: {list(self.authenticators)} names one twice")
        for name in ("token_ttl_seconds", "cache_ttl_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0, not {getattr(self, name)}")
        if self.cache_max_entries < 1:
            raise ValueError("cache_max_entries must be at least 1")
