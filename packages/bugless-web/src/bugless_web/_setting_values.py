"""How the web's settings given as text are read and checked, apart from the settings themselves.

:class:`bugless_web.settings.WebSettings` declares each setting once; the
values that need more than a type (several keys in one variable, networks,
the URLs and the address its pages show people to open or copy) are read
here, each refusal naming its flag and what would be accepted, so a replica
that would show a broken link or command never starts.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from bugless_core.networks import parse_networks


def trusted_proxy_networks(values: Sequence[str]) -> tuple[str, ...] | None:
    """The networks of ``--trusted-proxy`` as written canonically; None when none is given.

    None (not an empty tuple) so that the default by mode applies
    (:attr:`bugless_web.settings.WebSettings.proxy_networks`).

    Raises:
        ValueError: a value that is not an address or a network, or a CIDR
            with host bits set (it would trust more than it says).
    """
    networks = parse_networks(values, strict=True)
    return tuple(str(network) for network in networks) or None


def session_keys_of(values: Sequence[str]) -> tuple[str, ...]:
    """Every key of the given values (a value may hold several, separated by white space)."""
    return tuple(key for value in values for key in value.split())


def imported_source_urls(values: Sequence[str]) -> tuple[str, ...]:
    """Each old tracker's base URL, ending in ``/``; ValueError for what is not one."""
    sources: list[str] = []
    for value in (v for text in values for v in text.split()):
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"--imported-source {value!r}: give the old tracker's http(s) base URL"
            raise ValueError(msg)
        if parts.query or parts.fragment or parts.username or parts.password:
            msg = f"--imported-source {value!r}: no query, fragment or credentials"
            raise ValueError(msg)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        sources.append(f"{parts.scheme}://{parts.netloc.lower()}{path}")
    return tuple(sources)


def checked_public_url(value: str, *, dev: bool, flag: str = "--public-url") -> str:
    """``value`` without a trailing slash, or ValueError saying what is wrong with it."""
    if not value:
        return ""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{flag} {value!r}: give the site's base URL, e.g. https://bugs.example.com"
        raise ValueError(msg)
    if parts.query or parts.fragment or parts.username or parts.password:
        msg = f"{flag} {value!r}: no query, fragment or credentials (a base URL only)"
        raise ValueError(msg)
    if parts.scheme == "http" and not dev:
        msg = (
            f"{flag} {value!r}: use https (the session cookie is Secure, so browsers "
            "would not send it over plain HTTP); --dev allows http"
        )
        raise ValueError(msg)
    return value.rstrip("/")


def checked_api_address(value: str) -> str:
    """``value`` as ``host:port`` (``[v6]:port``), or ValueError saying what is wrong with it.

    Checked at start-up because the page shows it as a command to copy: a
    URL or a missing port there would fail only on the person's machine.
    """
    value = value.strip()
    if not value:
        return ""
    flag = "--api-public-address"
    host, sep, port = value.rpartition(":")
    if "://" in value or "/" in value or any(c.isspace() for c in value):
        msg = f"{flag} {value!r}: give host:port (no scheme or path), e.g. api.example.com:443"
        raise ValueError(msg)
    # ASCII digits only: str.isdigit also takes "²" (which int refuses in its
    # own words) and "٤٤٣" (which int reads as 443, a command nobody can copy).
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        msg = f"{flag} {value!r}: give host:port with a port from 1 to 65535"
        raise ValueError(msg)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        msg = f"{flag} {value!r}: write an IPv6 address in brackets, e.g. [2001:db8::1]:443"
        raise ValueError(msg)
    return value


__all__ = [
    "checked_api_address",
    "checked_public_url",
    "imported_source_urls",
    "session_keys_of",
    "trusted_proxy_networks",
]
