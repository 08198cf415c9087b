"""Where the notifier's NetworkPolicy lets it connect, by IP address and port.

The notifier POSTs to URLs admins choose: its policy must follow the rule the
notifier applies to component webhooks (:mod:`bugless_notify.addresses`),
public addresses only, so a pod whose own check failed (or an operator
endpoint) still cannot reach the cluster's services, the node or the cloud's
metadata service; and a network the operator allows the webhooks
(``notify.webhookAllowedNetworks``) must be open in the policy too, or the
setting does nothing in a cluster.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from chart_rendering import Manifest, of_kind, render, selects

from bugless_core.networks import parse_networks
from bugless_notify.addresses import AddressPolicy

NOTIFY = {
    "app.kubernetes.io/name": "bugless",
    "app.kubernetes.io/instance": "bugless",
    "app.kubernetes.io/component": "notify",
    "bugless.dev/tier": "backend",
}
SMTP, HTTPS = 587, 443

#: One address or more of every kind the notifier tells apart, public ones included.
ADDRESSES = [
    # Public.
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2001:4860:4860::8888",
    "2606:4700::1111",
    # The cluster's and the office's own: private, CGNAT, loopback.
    "10.0.0.1",
    "10.96.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.1",
    "192.168.1.10",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.8.9.10",
    "0.1.2.3",
    # Link-local, with the cloud metadata service.
    "169.254.169.254",
    "169.254.0.1",
    # Special purpose, documentation, benchmarking, multicast, reserved.
    "192.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6: loopback, ULA, link-local, site-local, multicast, documentation.
    "::1",
    "fd00::1",
    "fd12:3456::7",
    "fc00::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    # IPv4 in IPv6: NAT64 and mapped refused, 6to4 as the IPv4 it carries. (The
    # policy does not open these forms of webhookAllowedNetworks' IPv4 networks,
    # which the notifier would allow: stricter, so none is listed here.)
    "64:ff9b::a00:1",
    "64:ff9b::808:808",
    "2002:a00:1::1",
    "2002:c0a8:101::1",
    "2002:808:808::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",
]


def _in_block(block: dict[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if ip.version != cidr.version or ip not in cidr:
        return False
    excepted = (ipaddress.ip_network(e, strict=False) for e in block.get("except", []))
    return not any(ip.version == e.version and ip in e for e in excepted)


def _egress_allows(policies: list[Manifest], address: str, port: int) -> bool:
    """Whether the notifier's pods may open a TCP connection to ``address:port``.

    Only ipBlock peers admit an address outside the cluster's pods; ingress
    is the other side's business.
    """
    egress = [
        rule
        for policy in policies
        if selects(policy["spec"]["podSelector"], NOTIFY)
        and "Egress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("egress", [])
    ]
    assert egress, "no egress policy selects the notifier"
    for rule in egress:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port for p in ports):
            continue
        if any("ipBlock" in peer and _in_block(peer["ipBlock"], address) for peer in rule["to"]):
            return True
    return False


def _policies(values: dict[str, Any] | None = None) -> list[Manifest]:
    return of_kind(render(values), "NetworkPolicy")


def test_by_default_webhooks_reach_public_addresses_only_and_the_relay_its_host() -> None:
    """Webhooks: public addresses; the relay: wherever the operator put it.

    The default relay host, ``smtp``, is a Service in the cluster: a
    public-only rule on its port would stop every e-mail of a default
    install. Only the operator chooses the relay, so its port is open to any
    address (as the database's, LDAP's and the blob store's are) unless
    ``notify.smtp.networkPolicyPeers`` narrows it.
    """
    policies = _policies()
    inside = ("10.96.0.1", "169.254.169.254", "127.0.0.1", "100.64.0.1", "fd00::1")
    for public in ("8.8.8.8", "2001:4860:4860::8888"):
        assert _egress_allows(policies, public, HTTPS), public
        assert _egress_allows(policies, public, SMTP), public
    for address in inside:
        assert not _egress_allows(policies, address, HTTPS), address
        assert _egress_allows(policies, address, SMTP), address
    # Nor any other port, public or not.
    assert not _egress_allows(policies, "8.8.8.8", 22)
    assert not _egress_allows(policies, "10.96.0.1", 22)


def test_an_empty_relay_list_means_public_addresses_only() -> None:
    policies = _policies({"notify": {"smtp": {"networkPolicyPeers": []}}})
    assert _egress_allows(policies, "8.8.8.8", SMTP)
    for address in ("10.96.0.1", "169.254.169.254", "fd00::1"):
        assert not _egress_allows(policies, address, SMTP), address


@pytest.mark.parametrize(
    "allowed",
    [[], ["10.20.30.0/24", "fd00:1::/64"], ["192.168.7.7, 169.254.169.254 fc00::1"]],
)
def test_the_policy_allows_on_the_webhook_port_what_the_notifier_allows(
    allowed: list[str],
) -> None:
    """Address by address, the rendered policy and the notifier's own check agree.

    ``webhookAllowedNetworks`` as the notifier parses it (several in one
    entry, bare addresses) is what the policy opens besides the public ones.
    """
    # The relay narrowed to public addresses, so that its port shows whether
    # the allowed networks leaked onto it.
    notify: dict[str, Any] = {"smtp": {"networkPolicyPeers": []}}
    if allowed:
        notify["webhookAllowedNetworks"] = allowed
    policies = _policies({"notify": notify})
    app = AddressPolicy(parse_networks(allowed))
    extra = [str(net[net.num_addresses // 2]) for net in parse_networks(allowed)]
    disagree = [
        (address, by_policy, by_app)
        for address in [*ADDRESSES, *extra]
        if (by_policy := _egress_allows(policies, address, HTTPS))
        != (by_app := app.refusal(address) is None)
    ]
    assert not disagree, disagree
    if allowed:
        # Opened for the webhooks only, not the relay's port.
        assert not _egress_allows(policies, extra[0], SMTP)


def test_a_private_relay_and_operator_endpoints_are_opened_explicitly() -> None:
    values = {
        "notify": {
            "smtp": {"networkPolicyPeers": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]},
            "extraEgress": [
                {
                    "to": [{"ipBlock": {"cidr": "10.5.5.0/28"}}],
                    "ports": [{"protocol": "TCP", "port": 8443}],
                }
            ],
        }
    }
    policies = _policies(values)
    assert _egress_allows(policies, "10.1.2.3", SMTP)
    # The relay's peers replace the public default for the relay's port.
    assert not _egress_allows(policies, "8.8.8.8", SMTP)
    assert not _egress_allows(policies, "10.1.2.3", HTTPS)
    assert _egress_allows(policies, "10.5.5.5", 8443)
    assert not _egress_allows(policies, "10.5.5.5", HTTPS)
    # Webhooks still reach public addresses.
    assert _egress_allows(policies, "8.8.8.8", HTTPS)
