"""What ``bugless api serve`` is configured with, field by field.

Each field declares its flag, ``BUGLESS_API_*`` variable, default and help
(:func:`bugless_core.settings.setting`); the command's options are generated
from :class:`ApiSettings` and it receives the typed object.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bugless_core.grpc import TransferServerSettings
from bugless_core.logs import LogSettings
from bugless_core.service_address import ServiceAddress
from bugless_core.setting_files import pem_certificates, pem_private_key
from bugless_core.settings import group, setting
from bugless_core.user_changes import USER_CHANGES_SECONDS_HELP


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

    rate: float = setting(50.0, help="Calls per second each identity may sustain.")
    burst: int = setting(100, help="Calls each identity may make at once.")
    max_tracked: int = setting(
        100_000, cli=False, help="Bound on remembered buckets (idle ones go first)."
    )

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be more than 0 calls per second, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 call, not {self.burst}")
        if self.max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackendTlsSettings:
    """TLS from the API to the Model and the Authenticator (not to bots).

    The API's own ``--tls-*`` flags are the server side towards bots; these
    are the client side towards the backends, hence ``--service-*``.

    Attributes:
        ca: CA bundle of the backends' certificates; setting it turns TLS on.
        cert: This frontend's client certificate (mutual TLS), with ``key``.
        key: Private key of ``cert``.
    """

    ca: Path | None = setting(
        None,
        flag="--service-ca",
        must_exist=True,
        content=pem_certificates,
        help="CA bundle of the Model's and Authenticator's certificates; enables TLS to them.",
    )
    cert: Path | None = setting(
        None,
        flag="--service-cert",
        must_exist=True,
        content=pem_certificates,
        help="This frontend's client certificate towards the backends (mTLS).",
    )
    key: Path | None = setting(
        None,
        flag="--service-key",
        must_exist=True,
        content=pem_private_key,
        key_of="cert",
        help="Private key of --service-cert.",
    )

    def __post_init__(self) -> None:
        if (self.cert is not None or self.key is not None) and self.ca is None:
            raise ValueError("--service-cert/--service-key need --service-ca (TLS to backends)")

    def apply(self, address: ServiceAddress) -> ServiceAddress:
        """``address`` with these TLS files; unchanged when no CA is set."""
        if self.ca is None:
            return address
        return dataclasses.replace(address, ca=self.ca, cert=self.cert, key=self.key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """Everything the API frontend needs to serve.

    Attributes:
        model: Where the Model service is (and how to reach it, TLS included).
        auth: Where the Authenticator is.
        notify: Where the notifier listens (``bugless notify serve``), for
            the ``Webhooks`` service (a component's webhook endpoints); unset,
            those calls answer FAILED_PRECONDITION and the rest of the API serves.
        service_tls: TLS towards the Model, the Authenticator and the notifier. When it
            names a CA, ``model`` and ``auth`` get its files (an address
            built with TLS files of its own and no CA here keeps them).
        rate_limit: The per-identity rate limit.
        identity_ttl_seconds: How long the identity derived from a
            connection's certificate is reused before it is asked for again.
            It bounds how long a removed certificate mapping keeps working on
            a long-lived connection; a disabled user or a changed group is
            re-checked at the next call once the users' change feed names
            them (while ``user_changes_seconds`` follows it).
        user_cache_seconds: How long an id→username (and username→id)
            translation from the Authenticator is reused while the users'
            change feed cannot be followed (the Authenticator away, or too
            old to have it): then a rename shows in responses, and the new
            name is accepted in requests, only after this long; 0 asks the
            Authenticator on every call.
        user_changes_seconds: How often the users' change feed
            (``GetUserChanges``) is read. While it is, translations are kept
            until the person changes (at most 10 minutes), and a rename shows
            within this plus up to two of the Authenticator's polls (its
            ``user_changes_seconds``: a replica answers from what its own
            follower last read, ``bugless_auth.user_feed``). 0, or a value
            not below ``user_cache_seconds``
            (too rare to vouch for a translation older than that), never
            reads it: ``user_cache_seconds`` then bounds every translation.
        people_ca_certs: Certificates of the people CAs (the Authenticator's
            ``--people-ca-cert`` and each ``--people-ca-previous-cert``)
            whose client certificates the TLS handshake accepts beside
            ``--client-ca``'s. Kept apart from that bundle so a people CA
            rotation adds the new CA and later drops the old one as the
            Authenticator's settings do (the chart sets both from
            ``auth.peopleCa``), instead of someone editing a concatenated
            bundle; whether a certificate names a person is still the
            Authenticator's answer.
        backend_timeout_seconds: Deadline of each call to the Model and the
            Authenticator (searches included), so a stuck backend turns into
            UNAVAILABLE rather than a hung client.
        download_idle_seconds: How long a download may wait for its client
            to read the next message. The API reads the Model's stream only
            as fast as the client reads, so a client that stopped would
            otherwise hold a Model stream and its share of the transfer
            connection's window for as long as it kept the call open (no
            deadline bounds a download: a large file over a slow link takes
            the time it takes). Past it the Model call is released and the
            client's next read fails with DEADLINE_EXCEEDED
            (``DOWNLOAD_STALLED``); as the web's ``download_idle_seconds``.
            It also bounds each wait for the Model's next message of a
            download, the first included (past it the client gets
            UNAVAILABLE), which nothing else bounded.
        watch_idle_seconds: How long a watch may wait for its bot to read the
            next event, for the same reason: a bot that stopped reading a busy
            watch would otherwise hold a Model stream and its share of the
            watch connection's window for as long as it kept the call open,
            and 32 of them (one script may open that many) every watch of the
            replica. Past it the Model call is released and the bot's next
            read fails with DEADLINE_EXCEEDED (``WATCH_STALLED``); the Python
            client resumes from the position of the last event it handled.
            It also bounds the wait for the Model's first message of a watch
            (its ``subscribed`` marker; past it the bot gets UNAVAILABLE).
        batch_reads: Whether concurrent GetIssue calls of one caller are sent
            to the Model as one BatchGetIssues (see ``bugless_api._coalesce``;
            the answers are the same, each call costs a fraction). Off sends
            every GetIssue on its own.
        batch_creates: Whether concurrent CreateIssue calls of one caller are
            sent to the Model as one BatchCreateIssues (see
            ``bugless_api._coalesce_create``; each call gets its own item's
            issue or error). Off sends every CreateIssue on its own.
        grpc: Listening and TLS settings. ``client_ca``, ``tls_cert`` and
            ``tls_key`` are required: the API accepts nothing but verified TLS
            client certificates. Its ``insecure_local`` allows plaintext
            towards the Model and the Authenticator (debugging only).
        log: Log level and format.
    """

    model: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="host:port of the Model service."
    )
    auth: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="host:port of the Authenticator."
    )
    notify: ServiceAddress | None = setting(
        None,
        parse=ServiceAddress.parse,
        metavar="HOST:PORT",
        help="host:port of the notifier (`bugless notify serve`), for managing component "
        "webhooks through the API; unset, those calls answer FAILED_PRECONDITION.",
    )
    service_tls: BackendTlsSettings = group(BackendTlsSettings, env_prefix="BUGLESS_API_SERVICE_")
    rate_limit: RateLimitSettings = group(RateLimitSettings)
    identity_ttl_seconds: float = setting(
        300.0,
        deprecated_flags=("--identity-ttl",),
        deprecated_env=("BUGLESS_API_IDENTITY_TTL",),
        help="Seconds a connection's certificate identity is reused before re-checking.",
    )
    user_cache_seconds: float = setting(
        5.0,
        deprecated_flags=("--user-cache-ttl",),
        deprecated_env=("BUGLESS_API_USER_CACHE_TTL",),
        help="Seconds an id/username translation is reused when the users' change feed "
        "cannot be followed (renames show after it; 0: no cache).",
    )
    user_changes_seconds: float = setting(1.0, help=USER_CHANGES_SECONDS_HELP)
    people_ca_certs: tuple[Path, ...] = setting(
        (),
        flag="--people-ca-cert",
        env="BUGLESS_API_PEOPLE_CA_CERTS",
        multiple=True,
        must_exist=True,
        content=pem_certificates,
        help="A people CA's certificate (PEM; repeatable, env: paths separated by ':'): the "
        "client certificates it signed pass the TLS handshake beside --client-ca's. List the "
        "Authenticator's --people-ca-cert and, during a rotation, its --people-ca-previous-cert.",
    )
    backend_timeout_seconds: float = setting(
        30.0,
        deprecated_flags=("--backend-timeout",),
        deprecated_env=("BUGLESS_API_BACKEND_TIMEOUT",),
        help="Deadline in seconds of each call to the Model or the Authenticator.",
    )
    download_idle_seconds: float = setting(
        60.0,
        help="An attachment download's Model call is released once the client has read "
        "nothing for this long (the client's next read fails), or the Model has sent "
        "nothing of it for this long; a client that keeps reading is never cut off "
        "by it.",
    )
    watch_idle_seconds: float = setting(
        60.0,
        help="A watch's Model call is released once its bot has read nothing for this long "
        "while events wait (the bot's next read fails, and the client resumes from its "
        "position), or the Model has sent nothing of its start for this long; a bot that "
        "keeps reading is never cut off by it.",
    )
    batch_reads: bool = setting(
        True, help="Send concurrent GetIssue calls of one caller to the Model as one batch."
    )
    batch_creates: bool = setting(
        True, help="Send concurrent CreateIssue calls of one caller to the Model as one batch."
    )
    grpc: TransferServerSettings = group(TransferServerSettings)
    log: LogSettings = group(LogSettings)

    def __post_init__(self) -> None:
        for flag, value in (("--tls-cert", self.grpc.tls_cert), ("--tls-key", self.grpc.tls_key)):
            if value is None:
                raise ValueError(f"{flag} is required: the API serves TLS only")
        if self.grpc.client_ca is None:
            raise ValueError(
                "--client-ca is required: the API authenticates every caller by TLS client "
                "certificate"
            )
        if self.identity_ttl_seconds <= 0:
            raise ValueError("identity_ttl_seconds (--identity-ttl-seconds) must be more than 0")
        if self.user_cache_seconds < 0:
            raise ValueError(
                "user_cache_seconds (--user-cache-seconds) must be 0 (no cache) or more"
            )
        if not 0 <= self.user_changes_seconds <= 60:
            raise ValueError(
                "user_changes_seconds (--user-changes-seconds) must be between 0 (never) and 60"
            )
        if self.download_idle_seconds <= 0:
            raise ValueError("download_idle_seconds (--download-idle-seconds) must be more than 0")
        if self.watch_idle_seconds <= 0:
            raise ValueError("watch_idle_seconds (--watch-idle-seconds) must be more than 0")
        if self.backend_timeout_seconds <= 0:
            raise ValueError(
                "backend_timeout_seconds (--backend-timeout-seconds) must be more than 0"
            )
        object.__setattr__(self, "model", self.service_tls.apply(self.model))
        object.__setattr__(self, "auth", self.service_tls.apply(self.auth))
        if self.notify is not None:
            object.__setattr__(self, "notify", self.service_tls.apply(self.notify))
        if not self.grpc.insecure_local:
            for name in ("model", "auth", "notify"):
                address = getattr(self, name)
                if address is None:
                    continue
                if address.ca is None or address.cert is None:
                    raise ValueError(
                        f"mutual TLS to the {name} service is required: give --service-ca, "
                        "--service-cert and --service-key (a certificate naming "
                        "spiffe://bugless/api), or --insecure-local for plaintext debugging "
                        "on one machine"
                    )
