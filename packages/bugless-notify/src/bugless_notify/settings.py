"""What ``bugless notify serve`` is configured with, field by field.

Each field declares its flag, ``BUGLESS_NOTIFY_*`` variable, default and help
(:func:`bugless_core.settings.setting`); the command's options are generated
from :class:`NotifierSettings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bugless_core.grpc import GrpcServerSettings
from bugless_core.limits import MAX_NOTIFICATION_VIEWS
from bugless_core.logs import LogSettings
from bugless_core.networks import parse_networks
from bugless_core.service_address import ServiceAddress, client_tls_problem
from bugless_core.setting_files import pem_certificates, pem_private_key
from bugless_core.settings import group, setting
from bugless_notify.webhook import proxy_url_problem


def _networks(values: Sequence[str]) -> tuple[str, ...]:
    """The allowed networks as given, once each is known to be a network.

    Raises:
        ValueError: a value that is not a CIDR.
    """
    return tuple(str(network) for network in parse_networks(values))


def _proxy(value: str) -> str:
    """The proxy URL, once it is one (empty: none).

    Raises:
        ValueError: not an http:// or https:// URL of a proxy.
    """
    value = value.strip()
    problem = proxy_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _keys(values: Sequence[str]) -> tuple[str, ...]:
    """Every key of the given values (a value may hold several, separated by white space).

    Raises:
        ValueError: a key shorter than 16 characters.
    """
    keys = tuple(key for value in values for key in value.split())
    if any(len(key) < 16 for key in keys):
        msg = "every secret key must be 16 characters or longer"
        raise ValueError(msg)
    return keys


@dataclasses.dataclass(frozen=True, kw_only=True)
class NotifierTlsSettings:
    """TLS from the notifier to the Model and the Authenticator (mutual TLS).

    Attributes:
        ca: CA bundle of the backends' certificates; setting it turns TLS on.
        cert: The notifier's client certificate (its service identity).
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
        help="The notifier's client certificate towards the backends (mTLS).",
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
        problem = client_tls_problem(
            self.ca, self.cert, self.key, flags=("--service-ca", "--service-cert", "--service-key")
        )
        if problem is not None:
            raise ValueError(problem)

    def apply(self, address: ServiceAddress) -> ServiceAddress:
        """``address`` with these TLS files; unchanged when no CA is set."""
        if self.ca is None:
            return address
        return dataclasses.replace(address, ca=self.ca, cert=self.cert, key=self.key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmtpOptions:
    """The ``email`` channel's relay (see the README's option table).

    Attributes:
        host: The SMTP relay.
        port: Its port.
        security: ``none``, ``starttls`` or ``tls``.
        username: SMTP AUTH user (with ``password``).
        password: SMTP AUTH password (a Secret in the chart).
        sender: ``From`` and envelope sender.
        ca_file: PEM bundle the relay's certificate must chain to.
    """

    host: str = setting("localhost", flag="--smtp-host", help="SMTP relay host.")
    port: int = setting(25, flag="--smtp-port", help="SMTP relay port.")
    security: str = setting(
        "starttls",
        flag="--smtp-security",
        choices=("none", "starttls", "tls"),
        help="none, starttls or tls (SMTPS).",
    )
    username: str = setting(
        "", flag="--smtp-username", help="SMTP AUTH user name (with --smtp-password)."
    )
    password: str = setting("", flag="--smtp-password", secret=True, help="SMTP AUTH password.")
    sender: str = setting(
        "bugless <bugless@localhost>", flag="--smtp-sender", help="From address of the mails."
    )
    ca_file: Path | None = setting(
        None,
        flag="--smtp-ca-file",
        must_exist=True,
        content=pem_certificates,
        help="CA bundle the relay's certificate must chain to.",
    )

    def channel_options(self) -> dict[str, str]:
        """The ``email`` channel's string options."""
        options = {
            "host": self.host,
            "port": str(self.port),
            "security": self.security,
            "sender": self.sender,
        }
        if self.username:
            options |= {"username": self.username, "password": self.password}
        if self.ca_file is not None:
            options["ca_file"] = str(self.ca_file)
        return options


@dataclasses.dataclass(frozen=True, kw_only=True)
class NotifierSettings:
    """Everything the notifier needs to run.

    Attributes:
        model: Where the Model service is.
        auth: Where the Authenticator is.
        service_tls: TLS towards them.
        database_url: The notifier's PostgreSQL (queue, cursor, endpoints).
        schema: Its schema there.
        public_url: The web UI's base URL, for links in notifications.
        notify_authors: Also notify people of their own changes (each person
            can ask for it in their settings; this makes it the default).
        feed_batch: Changes read from the feed per transaction.
        concurrency: Deliveries attempted at once by this replica.
        smtp: The mail relay.
        webhook_timeout_seconds: Bound on one webhook POST.
        webhook_allowed_networks: Networks component webhooks may reach
            although not public (loopback, private, link-local, ...); none
            by default (:mod:`bugless_notify.addresses`).
        webhook_proxy: Forward proxy of operator-level webhooks (empty:
            none; the environment's ``HTTP(S)_PROXY`` is never used).
        webhook_ca_file: PEM bundle ``https`` webhook receivers'
            certificates must chain to, instead of certifi's copy of
            Mozilla's list (not the system's trust store): for receivers on
            an allowed network that an internal CA signed.
        secret_keys: Keys sealing webhook secrets at rest, newest first
            (:mod:`bugless_notify.sealing`); none: stored as given.
        digest_hour_utc: When the daily digests go out (people whose
            settings ask for one digest a day instead of a mail per change).
        digest_interval_seconds: Send digests this often instead (0: daily).
        grpc: The health endpoint (the notifier serves only health, reflection
            and metrics), ready file, TLS.
        log: Log level and format.
    """

    model: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="host:port of the Model service."
    )
    auth: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="host:port of the Authenticator."
    )
    service_tls: NotifierTlsSettings = group(
        NotifierTlsSettings, env_prefix="BUGLESS_NOTIFY_SERVICE_"
    )
    database_url: str = setting(
        secret=True, help="postgresql://… of the notifier's database (queue and feed cursor)."
    )
    schema: str = setting("bugless_notify", help="Schema of the notifier's tables.")
    public_url: str = setting(
        "http://localhost:8080", help="Base URL of the web UI, for links in notifications."
    )
    notify_authors: bool = setting(
        False, help="Notify people of their own changes unless their settings say otherwise."
    )
    feed_batch: int = setting(
        100,
        help=f"Changes read from the Model's feed per transaction (1 to {MAX_NOTIFICATION_VIEWS}).",
    )
    concurrency: int = setting(32, help="Deliveries attempted at once by this replica.")
    smtp: SmtpOptions = group(SmtpOptions, env_prefix="BUGLESS_NOTIFY_SMTP_")
    webhook_timeout_seconds: float = setting(10.0, help="Bound on one webhook POST, in seconds.")
    webhook_allowed_networks: tuple[str, ...] = setting(
        (),
        flag="--webhook-allowed-network",
        env="BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS",
        multiple=True,
        parse=_networks,
        help="A network (CIDR) component webhooks may reach although it is loopback, private, "
        "link-local or otherwise not public; repeat for several (env: space-separated). "
        "None: only public addresses.",
    )
    webhook_proxy: str = setting(
        "",
        parse=_proxy,
        metavar="URL",
        help="http(s)://host:port of a forward proxy for operator-level webhooks (not per "
        "component: those never use one); HTTP(S)_PROXY in the environment is ignored. "
        "Empty: none.",
    )
    webhook_ca_file: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="CA bundle https webhook receivers' certificates must chain to (an internal CA); "
        "replaces the default, certifi's copy of Mozilla's CA list.",
    )
    secret_keys: tuple[str, ...] = setting(
        flag="--secret-key",
        env="BUGLESS_NOTIFY_SECRET_KEYS",
        multiple=True,
        parse=_keys,
        secret=True,
        help="Seals webhook secrets at rest (16+ chars); repeat for rotation, newest first "
        "(env: space-separated). None: secrets are stored as given.",
    )
    digest_hour_utc: int = setting(
        7, help="Hour of the day (UTC, 0-23) the daily digests are sent at."
    )
    digest_interval_seconds: float = setting(
        0.0,
        help="Send digests this often instead of daily at --digest-hour-utc (tests, demos); "
        "0: daily.",
    )
    grpc: GrpcServerSettings = group(GrpcServerSettings)
    log: LogSettings = group(LogSettings)

    def __post_init__(self) -> None:
        # No more than MAX_NOTIFICATION_VIEWS: IssueDeliveries._check names
        # an issue's component moves of a batch in one call, relying on it.
        if not 1 <= self.feed_batch <= MAX_NOTIFICATION_VIEWS:
            raise ValueError(
                f"feed_batch (--feed-batch) must be between 1 and {MAX_NOTIFICATION_VIEWS}"
            )
        if not 0 <= self.digest_hour_utc <= 23:
            raise ValueError("digest_hour_utc (--digest-hour-utc) must be between 0 and 23")
        if self.digest_interval_seconds < 0:
            raise ValueError("digest_interval_seconds (--digest-interval-seconds) must be >= 0")
        if self.concurrency < 1:
            raise ValueError("concurrency (--concurrency) must be at least 1")
        object.__setattr__(self, "model", self.service_tls.apply(self.model))
        object.__setattr__(self, "auth", self.service_tls.apply(self.auth))

    def webhook_options(self) -> dict[str, str]:
        """The ``webhook`` channel's string options (the notifier adds ``endpoints``)."""
        options = {
            "timeout_seconds": str(self.webhook_timeout_seconds),
            "allowed_networks": " ".join(self.webhook_allowed_networks),
            "proxy": self.webhook_proxy,
        }
        if self.webhook_ca_file is not None:
            options["ca_file"] = str(self.webhook_ca_file)
        return options
