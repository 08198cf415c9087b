"""Webhook secrets sealed at rest: what a database dump alone does not give away.

An endpoint's secret signs every delivery (``X-Bugless-Signature``); whoever
holds it can make a receiver believe anything came from bugless. The
notifier must read it back to sign, so it cannot be hashed: it is encrypted
(Fernet: AES-128-CBC + HMAC-SHA256) with keys the operator keeps outside the
database (``BUGLESS_NOTIFY_SECRET_KEYS``, newest first), so a stolen or
carelessly shared dump or backup holds no usable secret.

Stored values carry :data:`PREFIX`; a value without it is a secret written
before the keys were set (or by a notifier without keys), read as it is. At
every start the notifier re-seals what is not sealed with its newest key
(:meth:`SecretSealer.needs_resealing`): setting keys encrypts the old rows,
putting a new key first rotates them all, and the old key may be dropped once
every replica has restarted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bugless_core.errors import FailedPrecondition

#: What a sealed value starts with (the version names the scheme).
PREFIX = "sealed:v1:"


def _fernet(secret: str) -> Fernet:
    """A Fernet key derived from an operator-chosen secret of any length."""
    digest = hashlib.sha256(b"bugless-notify-webhook-secret\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class SecretSealer:
    """Seals and opens webhook secrets with the configured keys (none: stored as given)."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        """Seal with ``keys[0]``; open with any of ``keys``.

        Raises:
            ValueError: a key shorter than 16 characters.
        """
        short = [i for i, key in enumerate(keys) if len(key) < 16]
        if short:
            msg = f"notify secret keys: key {short[0] + 1} is shorter than 16 characters"
            raise ValueError(msg)
        self._newest = _fernet(keys[0]) if keys else None
        self._all = MultiFernet([_fernet(key) for key in keys]) if keys else None

    @property
    def enabled(self) -> bool:
        """Whether secrets are sealed (keys were given)."""
        return self._all is not None

    def seal(self, secret: str) -> str:
        """``secret`` as it is stored: sealed with the newest key, or as given without keys."""
        if self._all is None:
            return secret
        return PREFIX + self._all.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value holds.

        Raises:
            FailedPrecondition: it is sealed and no configured key opens it.
        """
        if not stored.startswith(PREFIX):
            return stored
        if self._all is None:
            raise FailedPrecondition(
                "a webhook secret is sealed, but this notifier has no "
                "BUGLESS_NOTIFY_SECRET_KEYS to open it"
            )
        try:
            return self._all.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken as exc:
            raise FailedPrecondition(
                "no key of BUGLESS_NOTIFY_SECRET_KEYS opens a webhook secret "
                "(was the key it was sealed with removed?)"
            ) from exc

    def needs_resealing(self, stored: str) -> bool:
        """Whether ``stored`` is not yet sealed with the newest key (always False without keys)."""
        if self._newest is None:
            return False
        if not stored.startswith(PREFIX):
            return True
        try:
            self._newest.decrypt(stored.removeprefix(PREFIX).encode())
        except InvalidToken:
            return True
        return False

    def hint(self, stored: str) -> str:
        """The last 4 characters of the secret, for lists; ``????`` if it cannot be opened."""
        try:
            return self.open(stored)[-4:]
        except FailedPrecondition:
            return "????"
