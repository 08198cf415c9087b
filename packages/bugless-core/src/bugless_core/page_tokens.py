"""Opaque, tamper-evident page tokens shared by every backend.

A token carries the keyset position of the last row of a page plus a
fingerprint of the request it belongs to, signed with HMAC-SHA256. A client
cannot forge a position (which could skip ACL filtering tricks or force a
costly scan), nor reuse a token with another query; either way it gets a clear
INVALID_ARGUMENT instead of a wrong page.

A search's token also carries the total its first page counted (see
:meth:`PageTokenCodec.decode_page`), so that later pages need not count again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from bugless_core.errors import InvalidArgument

_VERSION = 1
_MAC_BYTES = 16


@dataclass(frozen=True)
class CarriedTotal:
    """A search's total as its first page counted it, carried by the tokens of later pages."""

    count: int
    lower_bound: bool


class PageTokenCodec:
    """Signs and verifies page tokens with one deployment-wide secret."""

    def __init__(self, secret: str | bytes) -> None:
        """Use ``secret``; every replica of a deployment must share it."""
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            msg = "the page token secret must be at least 16 bytes long"
            raise ValueError(msg)
        self._key = key

    @staticmethod
    def fingerprint(*parts: Any) -> str:
        """A short digest of whatever identifies the request (query, caller)."""
        raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(
        self, position: list[Any], request_fingerprint: str, total: CarriedTotal | None = None
    ) -> str:
        """Token for the page after ``position`` of the given request.

        ``total``, when given, rides along and comes back from
        :meth:`decode_page`: signed like the position, so a client cannot
        make a page report another total.
        """
        data: dict[str, Any] = {"v": _VERSION, "p": position, "f": request_fingerprint}
        if total is not None:
            data["t"] = [total.count, total.lower_bound]
        payload = json.dumps(data, separators=(",", ":"), default=str).encode()
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(
        self, token: str, request_fingerprint: str, field: str = "page.page_token"
    ) -> list[Any]:
        """The position in ``token``, if it is genuine and for this request.

        Raises:
            InvalidArgument: naming ``field``, for a malformed, forged or
                foreign token.
        """
        return self.decode_page(token, request_fingerprint, field)[0]

    def decode_page(
        self, token: str, request_fingerprint: str, field: str = "page.page_token"
    ) -> tuple[list[Any], CarriedTotal | None]:
        """The position in ``token`` and the total it carries (None: it carries none).

        A token issued before totals were carried has none; so has one whose
        total does not have the shape :meth:`encode` writes. The caller then
        counts, as it did for every page before.

        Raises:
            InvalidArgument: as :meth:`decode`.
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument(
                f"{field}: not a page token issued by this service", metadata={"field": field}
            ) from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidArgument(
                f"{field}: not a page token issued by this service (signature mismatch)",
                metadata={"field": field},
            )
        data = json.loads(payload)
        if data.get("v") != _VERSION or not isinstance(data.get("p"), list):
            raise InvalidArgument(f"{field}: page token from an incompatible version")
        if data.get("f") != request_fingerprint:
            raise InvalidArgument(
                f"{field}: this page token belongs to a different request; "
                "repeat the same query (and sort) to continue, or drop the token",
                metadata={"field": field},
            )
        position: list[Any] = data["p"]
        return position, _carried(data.get("t"))


def _carried(raw: Any) -> CarriedTotal | None:
    if (
        isinstance(raw, list)
        and len(raw) == 2
        and type(raw[0]) is int
        and raw[0] >= 0
        and isinstance(raw[1], bool)
    ):
        return CarriedTotal(raw[0], raw[1])
    return None
