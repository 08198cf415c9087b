"""``bugless_core.networks.parse_networks``: the one reader of CIDR settings.

The notifier widens a CIDR with host bits set to its network (an allow-list
of webhook targets, as it always did); the web tier's trusted proxies refuse
it (``strict``), since a setting that grants trust must not trust more than
it says.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.networks import parse_networks


@given(st.ip_addresses(), st.data())
def test_a_network_written_with_host_bits_is_widened_or_refused_by_strictness(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    prefix = data.draw(st.integers(0, address.max_prefixlen), label="prefix")
    text = f"{address}/{prefix}"
    network = ipaddress.ip_network(text, strict=False)
    assert parse_networks([text]) == (network,)
    if network.network_address == address:
        assert parse_networks([text], strict=True) == (network,)
    else:
        with pytest.raises(ValueError, match="has host bits set: give the network"):
            parse_networks([text], strict=True)
    # Written canonically, a network always passes, and reads back as itself.
    assert parse_networks([str(network)], strict=True) == (network,)


def test_values_hold_several_networks_separated_by_commas_or_white_space() -> None:
    parsed = parse_networks(["10.0.0.0/8, 192.0.2.7", "fd00::/8,2001:db8::1  198.51.100.0/24"])
    assert [str(n) for n in parsed] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "fd00::/8",
        "2001:db8::1/128",
        "198.51.100.0/24",
    ]
    assert parse_networks(["", " , "]) == ()


@pytest.mark.parametrize("text", ["ingress", "10.0.0.0/33", "*", "fd00::/129", "10.0.0.0/8/8"])
def test_a_value_that_is_no_network_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(repr(text))} is not a network"):
        parse_networks(["10.0.0.0/8", text])
