"""Opaque, tamper-evident page tokens shared by every backend.

A token carries the keyset position of the last row of a page plus a
fingerprint of the request it belongs to, signed with HMAC-SHA256. A client
cannot forge a position (which could skip ACL filtering tricks or force a
costly scan), nor reuse a token with another query; either way it gets a clear
INVALID_ARGUMENT instead of a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from bugless_core.errors import InvalidArgument

_VERSION = 1
_MAC_BYTES = 16


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

    def encode(self, position: list[Any], request_fingerprint: str) -> str:
        """Token for the page after ``position`` of the given request."""
        payload = json.dumps(
            {"v": _VERSION, "p": position, "f": request_fingerprint},
            separators=(",", ":"),
            default=str,
        ).encode()
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(
        self, token: str, request_fingerprint: str, field: str = "page.page_token"
    ) -> list[Any]:
        """The position in ``token``, if it is genuine and for this request.

        Raises:
            InvalidArgument: naming ``field``, for a malformed, forged or
                foreign token.
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
        return position
