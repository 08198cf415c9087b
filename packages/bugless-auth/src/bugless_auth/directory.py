"""User look-ups served from memory: the Authenticator's latency-bound read path.

Frontends resolve user ids to names on every page and usernames to ids in every
search, so answers come from a bounded cache; the misses of one batch are
fetched in a single query. The cache follows the users' change feed
(:class:`bugless_auth.user_feed.UserFeedFollower` polls it every
``user_changes_seconds``): a change made through any replica is forgotten here
within about a poll, so users who do not change are kept for
``cache_backstop_seconds``; while the feed cannot be read, entries are trusted
for ``cache_ttl_seconds`` only (:mod:`bugless_core.user_changes`, which also
says why a read is kept only if made at or after the user's latest change).
What was looked up before the follower's first read (at version 0) is
forgotten when that read ends: the feed never names the changes before it.
Changes made through this replica are forgotten at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bugless_auth._cache import TtlCache
from bugless_auth.store import IdentityStore, UserRecord
from bugless_core.user_changes import FeedFollowing
from bugless_core.usernames import username_key
from bugless_proto import v1, wire


def _varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    varint = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            return bytes(varint)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    """One protobuf length-delimited field: tag, varint length, bytes."""
    return bytes([(field_number << 3) | 2]) + _varint(len(payload)) + payload


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
    def of(
        cls, found: Sequence[CachedUser], missing: Sequence[str], version: int = 0
    ) -> EncodedUsersResponse:
        """The response for ``found`` users and ``missing`` keys, read at feed ``version``."""
        response = cls(users=[c.message for c in found], missing=list(missing), version=version)
        encoded = b"".join(
            [c.encoded for c in found]
            + [_length_delimited(2, m.encode()) for m in missing]
            + ([b"\x18" + _varint(version)] if version else [])
        )
        object.__setattr__(response, "_encoded", encoded)
        return response

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, called by grpclib
        """The pre-joined wire form."""
        encoded: bytes = object.__getattribute__(self, "_encoded")
        return encoded

    __bytes__ = SerializeToString


#: A cached user: when it was stored, the feed version it was read at, the user.
_Entry = tuple[float, int, CachedUser]


class UserDirectory:
    """Cached look-ups of users by id and by username over an :class:`IdentityStore`.

    Attributes:
        following: Where this cache is in the users' change feed.
    """

    def __init__(
        self,
        store: IdentityStore,
        *,
        ttl_seconds: float,
        max_entries: int,
        backstop_seconds: float | None = None,
    ) -> None:
        """Cache up to ``max_entries`` users (and as many usernames).

        ``ttl_seconds``: how long an entry is trusted while the feed is not
        followed; ``backstop_seconds`` (default: the same, i.e. no feed
        benefit): how long while it is.
        """
        self.store = store
        self.following = FeedFollowing(
            fallback_seconds=ttl_seconds,
            backstop_seconds=backstop_seconds if backstop_seconds is not None else ttl_seconds,
        )
        backstop = self.following.backstop_seconds
        self._by_id: TtlCache[str, _Entry] = TtlCache(ttl_seconds=backstop, max_entries=max_entries)
        self._by_username: TtlCache[str, _Entry] = TtlCache(
            ttl_seconds=backstop, max_entries=max_entries
        )

    @property
    def version(self) -> int:
        """The feed version applied: every change up to it is reflected in what is cached."""
        return self.following.version

    def remember(self, record: UserRecord, read_at: int | None = None) -> CachedUser:
        """A record this replica just read (at feed version ``read_at``) or wrote (None).

        A read is kept if made at or after the user's latest change known
        here (:meth:`FeedFollowing.may_keep`). A written record is not kept
        (its version is not known here): what was cached of the user is
        forgotten, and the next look-up reads the database.
        """
        cached = CachedUser.of(record)
        if read_at is None or not self.following.may_keep(record.user_id, read_at):
            self.forget(record.user_id)
            named = self._by_username.get(username_key(record.username))
            if named is not None and named[2].record.user_id == record.user_id:
                self._by_username.discard(username_key(record.username))
            return cached
        entry = (self.following.now(), read_at, cached)
        self._by_id.put(record.user_id, entry)
        if not record.alias_of:  # the username is the real account's, not this id's
            self._by_username.put(username_key(record.username), entry)
        return cached

    def forget(self, user_id: str) -> None:
        """Drop a user whose record changed behind the cache's back (a username taken)."""
        entry = self._by_id.get(user_id)
        self._by_id.discard(user_id)
        if entry is not None:
            self._by_username.discard(username_key(entry[2].record.username))

    def start_following(self, version: int, read_began: float, *, forget: bool = False) -> None:
        """Follow the feed from its head ``version`` (``forget``: after a reset, drop all).

        Entries read below ``version`` (at the first read: everything looked
        up before it, at version 0) are dropped too: the feed never names
        the changes up to ``version`` to this cache, so such an entry may
        predate one. Kept on ``cache_ttl_seconds`` instead, a user disabled
        through another replica just before this one's first read stayed
        enabled here that long (30 s by default: ``Authorize`` allowed them,
        ``IssueAssertion`` issued for them).
        """
        if forget:
            self._by_id.clear()
            self._by_username.clear()
        else:
            self._by_id.discard_where(lambda entry: entry[1] < version)
            self._by_username.discard_where(lambda entry: entry[1] < version)
        self.following.started(version, read_began)

    def apply_changes(self, user_ids: Sequence[str], version: int, read_began: float) -> None:
        """Forget the users the feed named up to ``version`` (by id, and under any username)."""
        changed = set(user_ids)
        for user_id in changed:
            self._by_id.discard(user_id)
        if changed:
            self._by_username.discard_where(
                lambda entry: (
                    entry[2].record.user_id in changed
                    or not changed.isdisjoint(entry[2].record.merged_ids or ())
                )
            )
        self.following.applied(changed, version, read_began)

    def _fresh(self, entry: _Entry | None) -> CachedUser | None:
        if entry is None:
            return None
        stored_at, read_at, cached = entry
        return cached if self.following.fresh(stored_at, read_at, self.following.now()) else None

    async def get(self, user_id: str) -> CachedUser | None:
        """One user by id (cached)."""
        found, _ = await self.get_many([user_id])
        return found[0] if found else None

    async def get_many(self, user_ids: Sequence[str]) -> tuple[list[CachedUser], list[str]]:
        """Users by id in request order (each once), and the ids that match nobody."""
        hits: dict[str, CachedUser] = {}
        misses: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._fresh(self._by_id.get(user_id))
            if cached is None:
                misses.append(user_id)
            else:
                hits[user_id] = cached
        if misses:
            read_at = self.version
            for record in await self.store.users_by_ids(misses):
                hits[record.user_id] = self.remember(record, read_at)
        found = [hits[i] for i in dict.fromkeys(user_ids) if i in hits]
        missing = [i for i in dict.fromkeys(user_ids) if i not in hits]
        return found, missing

    async def lookup_many(self, usernames: Sequence[str]) -> tuple[list[CachedUser], list[str]]:
        """Users by username (by ``username_key``) in request order, and names matching nobody."""
        wanted = list(dict.fromkeys(usernames))
        hits: dict[str, CachedUser] = {}
        misses: list[str] = []
        for name in wanted:
            key = username_key(name)
            cached = self._fresh(self._by_username.get(key))
            if (
                cached is None
                or username_key(cached.record.username) != key
                or cached.record.merged_ids is None  # read by id or at a login
            ):
                misses.append(name)
            else:
                hits[key] = cached
        if misses:
            read_at = self.version
            for record in await self.store.users_by_usernames(misses):
                hits[username_key(record.username)] = self.remember(record, read_at)
        found: list[CachedUser] = []
        missing: list[str] = []
        seen: set[str] = set()
        for name in wanted:
            cached = hits.get(username_key(name))
            if cached is None:
                missing.append(name)
            elif cached.record.user_id not in seen:
                seen.add(cached.record.user_id)
                found.append(cached)
        return found, missing
