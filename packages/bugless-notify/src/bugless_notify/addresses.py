"""Which addresses a component webhook may reach (it is a request the notifier makes for them).

A component admin chooses a component webhook's URL, and the notifier POSTs
to it from inside the cluster: without a rule, that is a blind server-side
request forgery — any in-cluster service (``kubernetes.default:443``), the
cloud's metadata service, or the notifier's own loopback on any port (a
NetworkPolicy does not cover loopback).

The rule: a component webhook may reach only *global* addresses. Loopback,
link-local (``169.254/16`` with the metadata service, ``fe80::/10``), private
(RFC 1918, ``fc00::/7``), CGNAT ``100.64/10``, unspecified, multicast,
reserved and documentation ranges are refused, as are IPv4-mapped, 6to4 and
NAT64 forms of those, unless the operator allows networks with
``BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS`` (``--webhook-allowed-network``;
default none). It is checked twice:

* when an admin adds the endpoint (:meth:`AddressPolicy.check_url`): a URL
  whose host is a forbidden IP literal or ``localhost`` is refused at once;
* at every delivery, on the addresses the host name *resolves to*, and the
  connection goes to the address checked (:mod:`bugless_notify._pinned_http`),
  so a name that resolves elsewhere later (DNS rebinding) cannot slip past.

Operator-level endpoints (rows without a component, written only by the
operator with database access; there is no RPC for them) are exempt: whoever
writes them already controls the notifier.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

from bugless_core.errors import InvalidArgument
from bugless_core.networks import IPNetwork, parse_networks

#: The variable (and, in the chart, ``notify.webhookAllowedNetworks``) that allows networks.
ALLOW_SETTING = "BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS"

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address, or None when it is one."""
    checks = (
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("an unspecified", ip.is_unspecified),
        ("a multicast", ip.is_multicast),
        ("a CGNAT (100.64.0.0/10)", ip.version == 4 and ip in _CGNAT),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a site-local", ip.version == 6 and ip.is_site_local),
        ("a non-global", not ip.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """The rule above, with the operator's allowed networks.

    Attributes:
        allowed: Networks component webhooks may reach although not public.
    """

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, values: Sequence[str]) -> AddressPolicy:
        """The policy of the setting's values (see :func:`parse_networks`)."""
        return cls(parse_networks(values))

    def _allows(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def refusal(self, address: str) -> str | None:
        """Why a component webhook may not reach ``address`` (an IP), or None when it may."""
        ip = ipaddress.ip_address(address.partition("%")[0])
        inner = _embedded_v4(ip)
        if self._allows(ip) or (inner is not None and self._allows(inner)):
            return None
        kind = _kind(inner) if inner is not None else None
        if inner is not None and kind is not None:
            return f"{ip} stands for {inner}, {kind} address"
        kind = _kind(ip)
        if kind is None:
            return None
        return f"{ip} is {kind} address"

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is a forbidden IP literal or ``localhost``.

        A host *name* is checked when a delivery resolves it; this catches
        at once what is forbidden whatever DNS says.

        Raises:
            bugless_core.errors.InvalidArgument: naming the setting that would allow it.
        """
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            reason = self.refusal("127.0.0.1")
            if reason is not None:
                raise InvalidArgument(
                    f"url: {host!r} is this server itself ({reason}); {self.advice()}"
                )
            return
        try:
            reason = self.refusal(host)
        except ValueError:  # a name, not an address
            return
        if reason is not None:
            raise InvalidArgument(f"url: {reason}; {self.advice()}")

    @staticmethod
    def advice() -> str:
        """What to tell an admin whose webhook was refused."""
        return (
            "component webhooks may reach only public addresses unless the operator "
            f"allows the network in {ALLOW_SETTING}"
        )
