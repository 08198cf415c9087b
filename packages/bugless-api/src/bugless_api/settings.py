"""What ``bugless api serve`` is configured with, field by field."""

from __future__ import annotations

import dataclasses

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import GrpcServerSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class RateLimitSettings:
    """The per-identity token bucket every call draws from.

    Each authenticated user has a bucket of ``burst`` calls that refills at
    ``rate`` calls per second: a script may fire ``burst`` calls at once, and
    sustains ``rate`` per second after that. Buckets live in each replica's
    memory, so behind N replicas a client gets at most N times the rate.

    Attributes:
        rate: Calls per second each identity may sustain.
        burst: Calls each identity may make at once.
        max_tracked: Bound on remembered buckets; idle ones are forgotten first
            (an idle bucket is full, so forgetting it changes nothing).
    """

    rate: float = 50.0
    burst: int = 100
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be more than 0 calls per second, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 call, not {self.burst}")
        if self.max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """Everything the API frontend needs to serve.

    Attributes:
        grpc: Listening and TLS settings. ``client_ca``, ``tls_cert`` and
            ``tls_key`` are required: the API accepts nothing but verified TLS
            client certificates.
        model: Where the Model service is (and how to reach it, TLS included).
        auth: Where the Authenticator is.
        rate_limit: The per-identity rate limit.
        identity_ttl_seconds: How long the identity derived from a
            connection's certificate is reused before it is asked for again.
            It bounds how long a disabled user, a changed group or a removed
            certificate mapping keeps working on a long-lived connection.
        user_cache_seconds: How long an id→username (and username→id)
            translation from the Authenticator is reused. A rename shows in
            responses, and the new name is accepted in requests, only after
            this long; 0 asks the Authenticator on every call.
        backend_timeout_seconds: Deadline of each call to the Model and the
            Authenticator (searches included), so a stuck backend turns into
            UNAVAILABLE rather than a hung client.
        batch_reads: Whether concurrent GetIssue calls of one caller are sent
            to the Model as one BatchGetIssues (see ``bugless_api._coalesce``;
            the answers are the same, each call costs a fraction). Off sends
            every GetIssue on its own.
    """

    grpc: GrpcServerSettings
    model: ServiceAddress
    auth: ServiceAddress
    rate_limit: RateLimitSettings = dataclasses.field(default_factory=RateLimitSettings)
    identity_ttl_seconds: float = 300.0
    user_cache_seconds: float = 5.0
    backend_timeout_seconds: float = 30.0
    batch_reads: bool = True

    def __post_init__(self) -> None:
        if self.grpc.client_ca is None:
            raise ValueError(
                "the API only accepts TLS client certificates: set client_ca (and tls_cert/tls_key)"
            )
        if self.identity_ttl_seconds <= 0:
            raise ValueError("identity_ttl_seconds must be more than 0")
        if self.user_cache_seconds < 0:
            raise ValueError("user_cache_seconds must be 0 (no cache) or more")
        if self.backend_timeout_seconds <= 0:
            raise ValueError("backend_timeout_seconds must be more than 0")
