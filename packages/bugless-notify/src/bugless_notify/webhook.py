"""The ``webhook`` channel: one notification as one signed HTTP POST (httpx).

A delivery's recipient is the *name* of a webhook endpoint; the URL, the
secret and the payload format are looked up when the delivery is attempted
(:class:`WebhookEndpointDirectory`), so a rotated secret or a moved URL
applies to deliveries already queued, and no secret is ever copied into the
queue or shown with a dead letter.

The request:

* body: ``json`` format — the notification's JSON form plus ``delivery_id``;
  ``chat`` format — ``{"text": ...}`` with ``<url|label>`` links, which Slack
  incoming webhooks and Google Chat spaces accept as they are;
* ``X-Bugless-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the
  endpoint's secret>`` (check it with :func:`verify_signature`);
* ``X-Bugless-Delivery``: the idempotency key, the same on every retry, so a
  receiver can drop a delivery it has already processed.

The answer: 2xx is delivered; 408, 429 and 5xx (and timeouts, refused
connections, DNS failures) are retried, after at least a ``Retry-After`` the
receiver sent; any other 4xx is permanent, and so is a redirect (webhooks do
not follow redirects: configure the final URL).

An *operator* endpoint (no component) goes through the proxy the operator
configured (``proxy``), if any; the environment's ``HTTP(S)_PROXY`` is never
read. A *component* endpoint (one a component admin added) is sent only to an
address :class:`~bugless_notify.addresses.AddressPolicy` allows, checked on
the addresses its host resolves to and connected to as checked
(:mod:`bugless_notify._pinned_http`); a forbidden address is permanent (a
dead letter saying why), not retried.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import hashlib
import hmac
import json
import re
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urlsplit

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.networks import IPNetwork, parse_networks
from bugless_core.notification_channel import DeliveryResult, Notification, NotificationChannel
from bugless_notify.__about__ import __version__
from bugless_notify._options import ChannelOptions
from bugless_notify.addresses import AddressPolicy

if TYPE_CHECKING:
    # Imported where a channel is built: registering the channel (which every
    # bugless process does when it loads plugins) must not cost httpx's
    # import (and the rich/pygments its command-line tool pulls in).
    import httpx

    from bugless_notify._pinned_http import Resolver

_ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: Shortest secret accepted: 128 bits as hex.
MIN_SECRET_LENGTH = 32
SIGNATURE_HEADER = "X-Bugless-Signature"
DELIVERY_HEADER = "X-Bugless-Delivery"
_RETRYABLE_4XX = frozenset({408, 429})


class PayloadFormat(enum.StrEnum):
    """What the POST body looks like."""

    #: The notification's structured JSON form (see ``bugless_notify.render``).
    JSON = "json"
    #: ``{"text": ...}`` for Slack incoming webhooks and Google Chat.
    CHAT = "chat"


@dataclasses.dataclass(frozen=True)
class WebhookEndpoint:
    """A receiver of webhook notifications.

    Attributes:
        name: How deliveries name it (lower-case letters, digits, ``.``,
            ``_``, ``-``; at most 63).
        url: ``https://`` (or ``http://``) URL the POST goes to.
        secret: HMAC key of the signature header, at least 32 characters.
        payload_format: ``json`` or ``chat``.
        component_id: The component whose admin added it; None for an
            operator-level endpoint (exempt from the address rule).
    """

    name: str
    url: str
    secret: str
    payload_format: PayloadFormat = PayloadFormat.JSON
    component_id: int | None = None

    def __post_init__(self) -> None:
        if not _ENDPOINT_NAME.match(self.name):
            raise InvalidArgument(
                f"name: {self.name!r} must be 1-63 lower-case letters, digits, '.', '_' or '-'"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InvalidArgument(f"url: {self.url!r} is not an http:// or https:// URL")
        if len(self.secret) < MIN_SECRET_LENGTH:
            raise InvalidArgument(
                f"secret: must be at least {MIN_SECRET_LENGTH} characters "
                f"(for example `openssl rand -hex 32`), not {len(self.secret)}"
            )
        try:  # a string from a form or a row becomes the enum; anything else is refused
            object.__setattr__(self, "payload_format", PayloadFormat(self.payload_format))
        except ValueError:
            raise InvalidArgument(
                f"payload_format: {self.payload_format!r} is not json or chat"
            ) from None


class WebhookEndpointDirectory(Protocol):
    """Where the channel finds an endpoint by name (the PostgreSQL store, in the notifier)."""

    async def get_endpoint(self, name: str) -> WebhookEndpoint | None:
        """The endpoint named ``name``, or None when there is none (any more)."""
        ...


def sign(secret: str, body: bytes) -> str:
    """The ``X-Bugless-Signature`` value of ``body``: ``sha256=<hex HMAC>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time), for receivers."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def webhook_body(notification: Notification, payload_format: PayloadFormat) -> bytes:
    """The exact bytes POSTed (and signed) for ``notification``."""
    message = notification.message
    payload: dict[str, Any]
    if payload_format is PayloadFormat.CHAT:
        payload = {"text": message.chat_text or message.subject}
    else:
        payload = {"delivery_id": notification.delivery_id, **message.data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit also takes "²", which float refuses,
    # and the header is the receiver's to write.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_response(response: httpx.Response) -> DeliveryResult:
    """Whether an answer means delivered, retry or give up (see the module docstring)."""
    status = response.status_code
    label = f"HTTP {status} {response.reason_phrase}".rstrip()
    if 200 <= status < 300:
        return DeliveryResult.delivered()
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("location", "")).hostname or "elsewhere"
        return DeliveryResult.rejected(
            f"{label} (to {target}): webhooks do not follow redirects; configure the final URL"
        )
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return DeliveryResult.rejected(label)
    return DeliveryResult.retry(
        label, retry_after_seconds=retry_after_seconds(response.headers.get("retry-after"))
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """How the ``webhook`` channel sends, field by field.

    Attributes:
        timeout_seconds: Bound on one POST (connect, send, answer).
        max_connections: HTTP connections open at once, over all endpoints.
        ca_file: PEM bundle ``https`` endpoints' certificates must chain to;
            unset, httpx's default bundle (certifi's copy of Mozilla's CA
            list, not the system's trust store: an internal CA needs this;
            ``BUGLESS_NOTIFY_WEBHOOK_CA_FILE``).
        allowed_networks: Networks component endpoints may reach although
            not public (``BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS``).
        proxy: ``http://`` or ``https://`` URL of a forward proxy that
            operator endpoints are sent through (``BUGLESS_NOTIFY_WEBHOOK_PROXY``);
            empty: none. Set here or nowhere: ``HTTP(S)_PROXY``, ``ALL_PROXY``
            and ``NO_PROXY`` in the environment are not read, so a variable
            meant for another program in the image cannot divert (or read)
            the notifications. Component endpoints never use a proxy: it
            would resolve their host itself, past the address check.
    """

    timeout_seconds: float = 10.0
    max_connections: int = 32
    ca_file: Path | None = None
    allowed_networks: tuple[IPNetwork, ...] = ()
    proxy: str = ""

    def __post_init__(self) -> None:
        problem = proxy_url_problem(self.proxy)
        if problem is not None:
            raise InvalidArgument(f"webhook.proxy: {problem}")

    @classmethod
    def from_options(cls, config: Mapping[str, Any]) -> WebhookSettings:
        """Settings from the channel's string options.

        Raises:
            bugless_core.errors.InvalidArgument: naming the option at fault.
        """
        options = ChannelOptions("webhook", config)
        default = cls()
        try:
            allowed = parse_networks([options.text("allowed_networks")])
        except ValueError as exc:
            raise options.error("allowed_networks", str(exc)) from None
        proxy = options.text("proxy").strip()
        problem = proxy_url_problem(proxy)
        if problem is not None:
            raise options.error("proxy", problem)
        return cls(
            allowed_networks=allowed,
            timeout_seconds=options.seconds("timeout_seconds", default.timeout_seconds),
            max_connections=options.integer("max_connections", default.max_connections, minimum=1),
            ca_file=options.path("ca_file"),
            proxy=proxy,
        )


def proxy_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the operator endpoints' proxy, or None (also for "")."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http:// or https:// proxy URL (such as http://proxy:3128)"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"{url!r} has a port that is not a number"
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return f"{url!r}: a proxy URL has no path, query or fragment"
    return None


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, as written there: never its path or user info.

    Some receivers (Slack's among them) carry their secret in the URL's
    path, and a user and password may ride in it too; what an admin page or
    a delivery's error shows is this. The host is kept as the URL writes it,
    so an IPv6 one stays in brackets (``http://[::1]:8080``): the bare
    ``hostname`` read ``http://::1``, which is no address.
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _describe(endpoint: WebhookEndpoint) -> str:
    """An endpoint for an error message: its name and origin, never the full URL."""
    return f"webhook endpoint {endpoint.name!r} ({url_origin(endpoint.url)})"


class WebhookChannel(NotificationChannel):
    """Deliver notifications as signed JSON POSTs to named endpoints.

    Options (``open``): ``timeout_seconds``, ``max_connections``, ``ca_file``,
    ``allowed_networks`` (white-space separated CIDRs), ``proxy`` (see
    :class:`WebhookSettings`), and ``endpoints``: the
    :class:`WebhookEndpointDirectory` the notifier provides.
    """

    name = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        endpoints: WebhookEndpointDirectory,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        """Use ``settings``, finding endpoints in ``endpoints``.

        ``resolver`` replaces the system's DNS for component endpoints (tests).
        """
        self.settings = settings
        self.endpoints = endpoints
        import httpx  # noqa: PLC0415 - see the TYPE_CHECKING import

        from bugless_notify import _pinned_http  # noqa: PLC0415 - imports httpcore

        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        else:
            verify = httpx.create_ssl_context()
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        common: dict[str, Any] = {
            "timeout": httpx.Timeout(settings.timeout_seconds),
            "follow_redirects": False,
            "headers": {"User-Agent": f"bugless-notify/{__version__}"},
        }
        # Operator endpoints: through the configured proxy, if any, and never
        # one from the environment (trust_env; WebhookSettings.proxy says why).
        self._client = httpx.AsyncClient(
            verify=verify,
            limits=limits,
            proxy=settings.proxy or None,
            trust_env=False,
            **common,
        )
        # Component endpoints: each host resolved once, checked, connected to as checked.
        backend = _pinned_http.CheckedBackend(
            AddressPolicy(settings.allowed_networks),
            resolver or _pinned_http.system_resolver,
        )
        self._component_client = httpx.AsyncClient(
            transport=_pinned_http.CheckedTransport(
                ssl_context=verify, limits=limits, backend=backend
            ),
            trust_env=False,
            **common,
        )

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build from options plus ``config["endpoints"]`` (see the class docstring)."""
        settings = WebhookSettings.from_options(config)
        endpoints = config.get("endpoints")
        if endpoints is None or not hasattr(endpoints, "get_endpoint"):
            raise InvalidArgument(
                "webhook.endpoints: the notifier must provide an endpoint directory"
            )
        return cls(settings, endpoints)

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """POST once; any failure is reported, never raised."""
        try:
            endpoint = await self.endpoints.get_endpoint(notification.recipient)
        except FailedPrecondition as exc:
            # The notifier's configuration (a sealing key missing), not the
            # delivery's: retried, so it goes out once the key is back.
            return DeliveryResult.retry(f"webhook endpoint {notification.recipient!r}: {exc}")
        if endpoint is None:
            return DeliveryResult.rejected(
                f"webhook endpoint {notification.recipient!r} does not exist (removed?)"
            )
        body = webhook_body(notification, endpoint.payload_format)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(endpoint.secret, body),
            DELIVERY_HEADER: notification.delivery_id,
        }
        where = _describe(endpoint)
        import httpx  # noqa: PLC0415 - imported by __init__ already; a dict lookup

        from bugless_notify._pinned_http import ForbiddenAddress  # noqa: PLC0415 - as httpx

        client = self._client if endpoint.component_id is None else self._component_client
        try:
            response = await client.post(endpoint.url, content=body, headers=headers)
        except ForbiddenAddress as exc:
            return DeliveryResult.rejected(
                f"{where} may not be reached: {exc}; {AddressPolicy.advice()}"
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return DeliveryResult.rejected(
                f"the URL of {where} is not usable ({type(exc).__name__})"
            )
        except httpx.TimeoutException:
            return DeliveryResult.retry(
                f"no answer from {where} within {self.settings.timeout_seconds:g} s"
            )
        except httpx.TransportError as exc:
            return DeliveryResult.retry(f"cannot reach {where}: {type(exc).__name__} {exc}".strip())
        return classify_response(response)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()
        await self._component_client.aclose()
