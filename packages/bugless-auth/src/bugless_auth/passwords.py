"""argon2id password hashing, off the event loop.

argon2 is deliberately slow and memory-hard, and argon2-cffi blocks while it
works, so every hash and verify runs in a worker thread: a login must never
stall the other calls a replica is serving.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bugless_auth.settings import PasswordHashing
from bugless_core.errors import InvalidArgument

#: Longer passwords are refused before hashing: argon2 hashes anything, but
#: accepting megabytes would let a caller buy CPU time cheaply.
MAX_PASSWORD_BYTES = 1024


class PasswordHashes:
    """Hashes and checks passwords with one set of argon2id parameters."""

    def __init__(self, parameters: PasswordHashing) -> None:
        """Use ``parameters`` for new hashes; older hashes still verify."""
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
        )
        # Verified against when the user does not exist, so that an unknown
        # username costs the same time as a wrong password (no enumeration).
        self._dummy_hash = self._hasher.hash("bugless-no-such-user")

    def check_acceptable(self, password: str, min_length: int) -> None:
        """Refuse a new password that is too short or too long.

        Raises:
            InvalidArgument: naming the accepted length.
        """
        if len(password) < min_length:
            raise InvalidArgument(f"password: use at least {min_length} characters")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidArgument(f"password: use at most {MAX_PASSWORD_BYTES} bytes")

    async def hash(self, password: str) -> str:
        """A PHC-format argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` burns the same time and says no."""
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            password = password[:MAX_PASSWORD_BYTES]
            stored_hash = None
        target = self._dummy_hash if stored_hash is None else stored_hash
        matches = await asyncio.to_thread(self._verify, target, password)
        return matches and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
