"""IP networks named in settings: one parser for every service that takes CIDRs.

The notifier's ``--webhook-allowed-network`` (networks a component webhook may
reach) and the web tier's ``--trusted-proxy`` (peers whose ``X-Forwarded-For``
is believed) both take addresses and CIDRs, several per value; they are read
here, so both accept and refuse the same texts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], *, strict: bool = False) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) from settings; several per value, by white space or commas.

    Args:
        values: The setting's values (each flag, or the variable as click
            split it).
        strict: Refuse a CIDR with host bits set (``10.1.2.3/16``) instead of
            widening it to its network (``10.1.0.0/16``): for a setting that
            grants trust, where a typo must not trust more than was meant.

    Raises:
        ValueError: a value that is not a network, naming it.
    """
    networks: list[IPNetwork] = []
    for value in values:
        for text in value.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                msg = f"{text!r} is not a network such as 10.0.0.0/8 or fd00::/8"
                raise ValueError(msg) from None
            if strict and networks[-1].network_address != ipaddress.ip_interface(text).ip:
                msg = (
                    f"{text!r} has host bits set: give the network ({networks[-1]}) or the "
                    f"single address ({text.split('/')[0]})"
                )
                raise ValueError(msg)
    return tuple(networks)
