"""Looking users up: by id, by name, by prefix, and what changed since a version.

The calls every frontend makes to name the people it shows (and to keep its
own cache of them current, through the users' change feed), as a mixin of
:class:`~bugless_auth.service.AuthService`. They read the replica's user
directory (its cache of the store) and the feed follower, and nothing of
sign-in, tokens or the policy: kept apart from authentication, as the
user-management calls are (:mod:`bugless_auth.user_admin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bugless_auth.directory import EncodedUsersResponse
from bugless_auth.user_feed import read_user_changes
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_auth.directory import UserDirectory
    from bugless_auth.store import IdentityStore
    from bugless_auth.user_feed import UserFeedFollower
    from bugless_core.auth_backend import AuthenticatorBackend

#: The most members ListGroupMembers lists of one group (about 400 kB of ids).
MAX_LISTED_MEMBERS = 10_000


class UserLookups:
    """The look-up calls of :class:`~bugless_auth.service.AuthService`."""

    if TYPE_CHECKING:
        backends: list[AuthenticatorBackend]
        store: IdentityStore
        directory: UserDirectory
        user_feed: UserFeedFollower

    async def get_users(self, user_ids: Sequence[str]) -> v1.UsersResponse:
        """Users by id, from cache; misses fetched in one query.

        ``version``: the feed version applied before anything was looked up
        (every change up to it is in the answer).
        """
        version = self.directory.version
        found, missing = await self.directory.get_many(user_ids)
        return EncodedUsersResponse.of(found, missing, version)

    async def lookup_users(self, usernames: Sequence[str]) -> v1.UsersResponse:
        """Users by username, from cache; misses fetched in one query."""
        version = self.directory.version
        found, missing = await self.directory.lookup_many(usernames)
        return EncodedUsersResponse.of(found, missing, version)

    async def suggest_users(self, prefix: str, limit: int) -> v1.UsersResponse:
        """Enabled users whose username, display name or email starts with ``prefix``."""
        version = self.directory.version
        records = await self.store.suggest(prefix, limit)
        return v1.UsersResponse(
            users=[self.directory.remember(r, version).message for r in records], version=version
        )

    async def count_group_members(self, groups: Sequence[str]) -> v1.CountGroupMembersResponse:
        """How many enabled people each group has, in request order.

        The store's users (not the directory cache, which holds only the
        users looked up lately): the local store's, the tls mapping's, and a
        directory's once they have signed in. A directory that can count its
        groups (LDAP: :meth:`AuthenticatorBackend.group_member_counts`, cached
        and bounded there) is asked too, and for a group it holds the answer
        is ``from_directory``: its enabled members (signed in here or not)
        plus the store's members who are none of its users, each person once
        (a group both local and in the directory is the union, not the sum).
        A directory that may hold a group but cannot count it now (down,
        slow, too big a group, no way to find the group by name) makes the
        answer ``unknown``, with the store's count, never an error. 0 and
        known means nobody, for any group often a misspelt name.
        """
        names = list(dict.fromkeys(groups))
        directories = [
            (backend.name, counts)
            for backend in self.backends
            if (counts := await backend.group_member_counts(names))
        ]
        stored = await self.store.count_group_members(
            names, outside=[name for name, _ in directories]
        )
        answers = []
        for group in names:
            everyone, outside = stored.get(group, (0, 0))
            held = [counts[group] for _, counts in directories if group in counts]
            answer = v1.GroupMembers(group=group, members=everyone)
            if any(n is None for n in held):
                answer.unknown = True
            elif held:
                answer.members = outside + sum(n for n in held if n is not None)
                answer.from_directory = True
            answers.append(answer)
        return v1.CountGroupMembersResponse(groups=answers)

    async def list_group_members(self, groups: Sequence[str]) -> v1.ListGroupMembersResponse:
        """Who the store knows in each group, by user id, in request order.

        From the store: a directory's members once they have signed in, and
        never those who have not (unlike :meth:`count_group_members`, which
        asks the directory): a member who never signed in has no user id,
        and none is made for them here, so that only people who used bugless
        are users (suggested, listed). A group of more than
        :data:`MAX_LISTED_MEMBERS` is answered ``too_many`` and no ids.
        """
        names = list(dict.fromkeys(groups))
        members = await self.store.group_member_ids(names, MAX_LISTED_MEMBERS + 1)
        answers = []
        for group in names:
            ids = members.get(group, [])
            too_many = len(ids) > MAX_LISTED_MEMBERS
            answers.append(
                v1.GroupMemberIds(group=group, user_ids=[] if too_many else ids, too_many=too_many)
            )
        return v1.ListGroupMembersResponse(groups=answers)

    async def get_user_changes(self, after_version: int) -> v1.UserChanges:
        """The users changed after ``after_version`` (the users' change feed).

        From what this replica's follower read when that is recent enough
        (:meth:`UserFeedFollower.answer`), else from the database. Either
        way the reply says how often the follower reads
        (``poll_seconds``): a frontend whose TTL that poll does not fit
        can say which setting to change.
        """
        answer = self.user_feed.answer(after_version)
        if answer is None:
            answer = await read_user_changes(self.store, after_version)
        answer.poll_seconds = self.user_feed.poll_seconds
        return answer
