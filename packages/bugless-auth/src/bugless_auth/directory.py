"""User look-ups served from memory: the Authenticator's latency-bound read path.

Frontends resolve user ids to names on every page and usernames to ids in every
search, so answers come from a bounded TTL cache; the misses of one batch are
fetched in a single query. Staleness is bounded by the TTL: a rename or a
disable made through another replica (or by a login there) is visible here
within ``cache_ttl_seconds``; changes made through this replica at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bugless_auth._cache import TtlCache
from bugless_auth.store import IdentityStore, UserRecord
from bugless_proto import v1, wire


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    """One protobuf length-delimited field: tag, varint length, bytes."""
    size = len(payload)
    varint = bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        if size:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return bytes([(field_number << 3) | 2]) + bytes(varint) + payload


@dataclass(frozen=True)
class CachedUser:
    """A user record with its wire form built once, reused by every response.

    Attributes:
        record: The user.
        message: The ``v1.User`` message.
        encoded: ``message`` as a ``UsersResponse.users`` entry, ready to be
            concatenated (see :class:`EncodedUsersResponse`).
    """

    record: UserRecord
    message: v1.User
    encoded: bytes

    @classmethod
    def of(cls, record: UserRecord) -> CachedUser:
        """Wrap ``record``."""
        message = v1.User(
            user_id=record.user_id,
            username=record.username,
            display_name=record.display_name,
            email=record.email,
            disabled=record.disabled,
            bot=record.bot,
            placeholder=record.placeholder,
            merged_user_ids=list(record.merged_ids or ()),
        )
        # upb writes betterproto2's bytes (``wire.encode(m) == bytes(m)``) in
        # ~1 µs instead of ~10: a user the cache lacks is encoded once per miss,
        # and GetIssue's first sightings miss on about every second GetUsers.
        return cls(record, message, _length_delimited(1, wire.encode(message)))


class EncodedUsersResponse(v1.UsersResponse):
    """A ``UsersResponse`` whose wire form is joined from per-user cached bytes.

    betterproto2 serialises in pure Python, about 30 µs per user: 50 users
    would cost 1.5 ms per call, the whole latency budget of a cached batch.
    Each cached user carries its encoded entry, so a response is one
    ``bytes.join``. The message fields are filled too, so in-process callers
    read it like any ``UsersResponse``; grpclib's codec calls
    ``SerializeToString``, which returns the joined bytes.
    """

    @classmethod
    def of(cls, found: Sequence[CachedUser], missing: Sequence[str]) -> EncodedUsersResponse:
        """The response for ``found`` users and ``missing`` keys."""
        response = cls(users=[c.message for c in found], missing=list(missing))
        encoded = b"".join(
            [c.encoded for c in found] + [_length_delimited(2, m.encode()) for m in missing]
        )
        object.__setattr__(response, "_encoded", encoded)
        return response

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, called by grpclib
        """The pre-joined wire form."""
        encoded: bytes = object.__getattribute__(self, "_encoded")
        return encoded

    __bytes__ = SerializeToString


class UserDirectory:
    """Cached look-ups of users by id and by username over an :class:`IdentityStore`."""

    def __init__(self, store: IdentityStore, *, ttl_seconds: float, max_entries: int) -> None:
        """Cache up to ``max_entries`` users (and as many usernames) for ``ttl_seconds``."""
        self.store = store
        self._by_id: TtlCache[str, CachedUser] = TtlCache(
            ttl_seconds=ttl_seconds, max_entries=max_entries
        )
        self._by_username: TtlCache[str, CachedUser] = TtlCache(
            ttl_seconds=ttl_seconds, max_entries=max_entries
        )

    def remember(self, record: UserRecord) -> CachedUser:
        """Put a record this replica just read or wrote into both caches."""
        cached = CachedUser.of(record)
        self._by_id.put(record.user_id, cached)
        if not record.alias_of:  # the username is the real account's, not this id's
            self._by_username.put(record.username.lower(), cached)
        return cached

    def forget(self, user_id: str) -> None:
        """Drop a user whose record changed behind the cache's back (a username taken)."""
        cached = self._by_id.get(user_id)
        self._by_id.discard(user_id)
        if cached is not None:
            self._by_username.discard(cached.record.username.lower())

    async def get(self, user_id: str) -> CachedUser | None:
        """One user by id (cached)."""
        found, _ = await self.get_many([user_id])
        return found[0] if found else None

    async def get_many(self, user_ids: Sequence[str]) -> tuple[list[CachedUser], list[str]]:
        """Users by id in request order (each once), and the ids that match nobody."""
        hits: dict[str, CachedUser] = {}
        misses: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._by_id.get(user_id)
            if cached is None:
                misses.append(user_id)
            else:
                hits[user_id] = cached
        if misses:
            for record in await self.store.users_by_ids(misses):
                hits[record.user_id] = self.remember(record)
        found = [hits[i] for i in dict.fromkeys(user_ids) if i in hits]
        missing = [i for i in dict.fromkeys(user_ids) if i not in hits]
        return found, missing

    async def lookup_many(self, usernames: Sequence[str]) -> tuple[list[CachedUser], list[str]]:
        """Users by username (case-insensitive) in request order, and names matching nobody."""
        wanted = list(dict.fromkeys(usernames))
        hits: dict[str, CachedUser] = {}
        misses: list[str] = []
        for name in wanted:
            key = name.lower()
            cached = self._by_username.get(key)
            if (
                cached is None
                or cached.record.username.lower() != key
                or cached.record.merged_ids is None  # read by id or at a login
            ):
                misses.append(name)
            else:
                hits[key] = cached
        if misses:
            for record in await self.store.users_by_usernames(misses):
                hits[record.username.lower()] = self.remember(record)
        found: list[CachedUser] = []
        missing: list[str] = []
        seen: set[str] = set()
        for name in wanted:
            cached = hits.get(name.lower())
            if cached is None:
                missing.append(name)
            elif cached.record.user_id not in seen:
                seen.add(cached.record.user_id)
                found.append(cached)
        return found, missing
