"""The ``local`` backend: usernames and argon2id passwords in the Authenticator's database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from bugless_auth.passwords import PasswordHashes
from bugless_auth.settings import PasswordHashing
from bugless_auth.store import IdentityStore
from bugless_core.auth_backend import ExternalIdentity, PasswordAuthenticator


class LocalAuthenticator(PasswordAuthenticator):
    """Checks passwords against the local store (users made with ``bugless auth user add``).

    Its subjects are ``local:<user id>``: the local store is the directory, so
    the id it minted is the steadiest key there is.
    """

    name = "local"

    def __init__(self, store: IdentityStore, hashes: PasswordHashes) -> None:
        """Use ``store`` for users and ``hashes`` for checking passwords."""
        self.store = store
        self.hashes = hashes

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build from the service's config.

        Config keys: ``identity_store`` (required, added by the service);
        ``password_hashes`` (a :class:`PasswordHashes`, added by the service
        so the service and the backend share parameters), or the argon2
        options ``time_cost``, ``memory_kib``, ``parallelism``.
        """
        store = config.get("identity_store")
        if not isinstance(store, IdentityStore):
            raise TypeError("the local authenticator needs config['identity_store']")
        hashes = config.get("password_hashes")
        if not isinstance(hashes, PasswordHashes):
            defaults = PasswordHashing()
            hashes = PasswordHashes(
                PasswordHashing(
                    time_cost=int(config.get("time_cost", defaults.time_cost)),
                    memory_kib=int(config.get("memory_kib", defaults.memory_kib)),
                    parallelism=int(config.get("parallelism", defaults.parallelism)),
                )
            )
        return cls(store, hashes)

    @property
    def display_name(self) -> str:
        """Label for the sign-in form."""
        return "Username and password"

    async def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The user, if the password matches; an unknown user takes as long as a wrong one."""
        found = await self.store.local_credentials(username) if username else None
        if found is None:
            await self.hashes.verify(None, password)
            return None
        user, stored_hash = found
        matches = await self.hashes.verify(stored_hash, password)
        if not matches or not password:
            return None
        if self.hashes.needs_rehash(stored_hash):
            await self.store.set_local_password(user.username, await self.hashes.hash(password))
        return ExternalIdentity(
            subject=f"local:{user.user_id}",
            username=user.username,
            display_name=user.display_name,
            email=user.email,
            groups=user.groups,
            bot=user.bot,
        )
