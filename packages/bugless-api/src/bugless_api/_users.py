"""Usernames on the public API, opaque user ids on the Model: translation both ways.

The Model knows people only by the ids the Authenticator mints; bots know
them by username. Every message that crosses the gateway has its user
references collected into a :class:`UserRefs` first, then rewritten with *one*
batch look-up (``LookupUsers`` for requests, ``GetUsers`` for responses), so a
search returning fifty issues costs one Authenticator call, not fifty. The
answers are then remembered until the person changes (:class:`UserDirectory`:
the users' change feed, read every ``user_changes_seconds``; or for
``user_cache_seconds`` while it cannot be), so a bot reading issues in a loop
costs no Authenticator call at all for people it has already seen: a rename
shows through the API about a poll late.

The walkers below are the one place that knows which fields hold people (see
the header of ``common.proto``); a new user field in the protos needs a line
here. The people of the messages a reply carries to a bot (issues, history
entries, attachments) are listed once, in the ``*_PEOPLE`` tuples: these
walkers and :mod:`bugless_api._wire_issues`, which renames them in upb
messages, both read them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableSequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bugless_core.errors import InvalidArgument
from bugless_core.issue_labels import holds_people
from bugless_core.user_cache import (
    USER_CACHE_SIZE,
    UserCache,
    get_user_changes,
    get_users,
    lookup_users,
)
from bugless_core.usernames import username_key
from bugless_proto import v1

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Search fields whose text values are people.
_PEOPLE_SEARCH_FIELDS = frozenset(
    {
        v1.SearchField.ASSIGNEE,
        v1.SearchField.REPORTER,
        v1.SearchField.CC,
        v1.SearchField.VERIFIER,
    }
)


#: Fields of an ``Issue`` holding one person, and those holding a list of
#: people (besides the values of its USER custom fields).
ISSUE_PERSON = ("reporter", "assignee", "verifier")
ISSUE_PEOPLE = ("cc",)
#: A ``HistoryEntry``'s person (besides its attachments' and its changes').
ENTRY_PERSON = ("author",)
#: An ``Attachment``'s person.
ATTACHMENT_PERSON = ("uploader",)
#: A ``FieldChange`` of a people field
#: (:func:`bugless_core.issue_labels.holds_people`): its values.
CHANGE_PERSON = ("old_value", "new_value")
CHANGE_PEOPLE = ("added", "removed")
#: ``CustomFieldType.USER`` as the int a upb message holds (betterproto2's
#: members compare equal to it).
USER_TYPE = int(v1.CustomFieldType.USER)


@dataclass
class _Slot:
    path: str
    value: str
    assign: Callable[[str], None]


def _setter(message: object, attribute: str) -> Callable[[str], None]:
    def assign(value: str) -> None:
        setattr(message, attribute, value)

    return assign


def _item_setter(values: MutableSequence[str], index: int) -> Callable[[str], None]:
    def assign(value: str) -> None:
        values[index] = value

    return assign


class UserRefs:
    """The user references found in some messages, to rewrite in one batch.

    Empty references mean "nobody" and are skipped. Paths name the field as a
    caller wrote it (``fields.assignee``, ``cc[2]``), for error messages.
    """

    def __init__(self) -> None:
        self.slots: list[_Slot] = []

    def field(self, message: object, attribute: str, path: str) -> None:
        """A scalar string field holding a person."""
        value = getattr(message, attribute)
        if value:
            self.slots.append(_Slot(path, value, _setter(message, attribute)))

    def items(self, values: MutableSequence[str], path: str) -> None:
        """A repeated string field holding people."""
        for index, value in enumerate(values):
            if value:
                self.slots.append(_Slot(f"{path}[{index}]", value, _item_setter(values, index)))

    # ---- walkers, one per message that holds people ----

    def issue(self, issue: v1.Issue | None, path: str = "issue") -> None:
        """Reporter, assignee, verifier, cc."""
        if issue is None:
            return
        for name in ISSUE_PERSON:
            self.field(issue, name, f"{path}.{name}")
        for name in ISSUE_PEOPLE:
            self.items(getattr(issue, name), f"{path}.{name}")
        for index, value in enumerate(issue.custom_fields):
            if value.type == USER_TYPE:
                self.items(value.values, f"{path}.custom_fields[{index}].values")

    def custom_values(
        self, values: Iterable[v1.CustomFieldValue], user_fields: set[int], path: str
    ) -> None:
        """Values of a request's USER fields (``user_fields``: their ids)."""
        for index, value in enumerate(values):
            if value.field_id in user_fields:
                self.items(value.values, f"{path}[{index}].values")

    def custom_field(self, field: v1.CustomField | None, path: str = "custom_field") -> None:
        """The default of a USER field's definition."""
        if field is not None and field.type is v1.CustomFieldType.USER:
            self.items(field.default_values, f"{path}.default_values")

    def attachment(self, attachment: v1.Attachment | None, path: str = "attachment") -> None:
        """The uploader."""
        if attachment is not None:
            for name in ATTACHMENT_PERSON:
                self.field(attachment, name, f"{path}.{name}")

    def issues(self, issues: Iterable[v1.Issue], path: str = "issues") -> None:
        """Every issue of a list."""
        for index, issue in enumerate(issues):
            self.issue(issue, f"{path}[{index}]")

    def issue_fields(self, fields: v1.IssueFields | None, path: str = "fields") -> None:
        """Assignee and verifier of a create or a delta."""
        if fields is None:
            return
        self.field(fields, "assignee", f"{path}.assignee")
        self.field(fields, "verifier", f"{path}.verifier")

    def delta(self, delta: v1.IssueDelta | None, path: str = "delta") -> None:
        """The scalar people and the cc additions and removals of a delta."""
        if delta is None:
            return
        self.issue_fields(delta.fields, f"{path}.fields")
        self.items(delta.cc_add, f"{path}.cc_add")
        self.items(delta.cc_remove, f"{path}.cc_remove")

    def entry(self, entry: v1.HistoryEntry | None, path: str = "entry") -> None:
        """The author and the people inside field changes."""
        if entry is None:
            return
        for name in ENTRY_PERSON:
            self.field(entry, name, f"{path}.{name}")
        for index, attachment in enumerate(entry.attachments):
            self.attachment(attachment, f"{path}.attachments[{index}]")
        for index, change in enumerate(entry.changes):
            if holds_people(change):
                where = f"{path}.changes[{index}]"
                for name in CHANGE_PERSON:
                    self.field(change, name, f"{where}.{name}")
                for name in CHANGE_PEOPLE:
                    self.items(getattr(change, name), f"{where}.{name}")

    def principals(self, principals: Iterable[v1.Principal], path: str) -> None:
        """User principals (group principals are names already)."""
        for index, principal in enumerate(principals):
            if principal.user is not None:
                self.field(principal, "user", f"{path}[{index}].user")

    def acl(self, entries: Iterable[v1.AclEntry], path: str = "acl") -> None:
        """User principals of ACL entries."""
        for index, entry in enumerate(entries):
            if entry.principal is not None and entry.principal.user is not None:
                self.field(entry.principal, "user", f"{path}[{index}].principal.user")

    def template(self, template: v1.IssueTemplate | None, path: str = "template") -> None:
        """The default assignee of a component's template."""
        if template is not None:
            self.field(template, "assignee", f"{path}.assignee")

    def component(self, component: v1.Component | None, path: str = "component") -> None:
        """ACL and template of a component."""
        if component is None:
            return
        self.acl(component.acl, f"{path}.acl")
        self.template(component.template, f"{path}.template")

    def hotlist(self, hotlist: v1.Hotlist | None, path: str = "hotlist") -> None:
        """Owner and editors."""
        if hotlist is None:
            return
        self.field(hotlist, "owner", f"{path}.owner")
        self.items(hotlist.editors, f"{path}.editors")

    def hotlist_item(self, item: v1.HotlistItem | None, path: str = "item") -> None:
        """Who added the item."""
        if item is not None:
            self.field(item, "adder", f"{path}.adder")

    def saved_search(self, search: v1.SavedSearch | None, path: str = "saved_search") -> None:
        """Owner and user readers."""
        if search is None:
            return
        self.field(search, "owner", f"{path}.owner")
        self.principals(search.readers, f"{path}.readers")

    def query(self, query: v1.StructuredQuery | None, path: str = "structured") -> None:
        """Text values of person terms anywhere in a structured query."""
        if query is not None and query.filter is not None:
            self._node(query.filter, f"{path}.filter")

    def _node(self, node: v1.SearchNode, path: str) -> None:
        if node.all_of is not None:
            for index, child in enumerate(node.all_of.nodes):
                self._node(child, f"{path}.all_of.nodes[{index}]")
        elif node.any_of is not None:
            for index, child in enumerate(node.any_of.nodes):
                self._node(child, f"{path}.any_of.nodes[{index}]")
        elif node.negate is not None:
            self._node(node.negate, f"{path}.negate")
        elif node.term is not None and node.term.field in _PEOPLE_SEARCH_FIELDS:
            for index, value in enumerate(node.term.values):
                if value.text is not None:
                    self.field(value, "text", f"{path}.term.values[{index}].text")


class UserDirectory:
    """Batch translation between usernames and user ids through the Authenticator.

    Both directions share one cache (:class:`bugless_core.user_cache.UserCache`,
    the one the web tier uses too): every user the Authenticator
    returns (to ``GetUsers`` or ``LookupUsers``) is remembered by id and by
    lower-cased username, at most ``max_entries`` of each, least recently
    stored forgotten first. With ``changes_seconds`` the cache follows the
    users' change feed: people are kept until they change, and a rename
    shows after about one poll. Without it (or while the feed cannot be
    read) they are kept ``cache_seconds``: within that a rename is not seen
    (the old username is shown, and still accepted for the id it named).
    Unknown usernames are never cached, so a new user is usable at once.
    ``cache_seconds=0`` asks the Authenticator every time.
    """

    def __init__(
        self,
        auth: v1.AuthenticatorStub,
        *,
        timeout_seconds: float,
        cache_seconds: float = 0.0,
        changes_seconds: float = 0.0,
        max_entries: int = USER_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        on_feed_read: Callable[[float], None] | None = None,
        metrics_registry: CollectorRegistry | None = None,
        on_users_changed: Callable[[Collection[str] | None], None] | None = None,
    ) -> None:
        """Translate through ``auth``, each look-up bounded by ``timeout_seconds``.

        ``on_feed_read``: called whenever the feed was read, with the seconds
        since that read began (the metrics, ``UserCache(on_read=)``);
        ``metrics_registry``: where the feed's follower reports as a background
        loop (``UserCache(metrics_registry=)``); ``on_users_changed``: called
        with the ids each read of the feed names (``UserCache(on_changed=)``).
        """
        self.cache = UserCache(
            ttl_seconds=cache_seconds,
            max_entries=max_entries,
            clock=clock,
            changes=get_user_changes(auth, timeout=timeout_seconds) if changes_seconds else None,
            poll_seconds=changes_seconds,
            on_read=on_feed_read,
            metrics_registry=metrics_registry,
            on_changed=on_users_changed,
        )
        self._get = get_users(auth, timeout=timeout_seconds)
        self._lookup = lookup_users(auth, timeout=timeout_seconds)

    def close(self) -> None:
        """Stop following the users' change feed."""
        self.cache.close()

    async def ids_by_username(self, usernames: Iterable[str]) -> dict[str, str]:
        """User ids of the given usernames (keyed by ``username_key``); unknown ones absent."""
        users = await self.cache.by_name(usernames, self._lookup)
        return {username_key(name): user.user_id for name, user in users.items()}

    async def users_by_name(self, usernames: Iterable[str]) -> dict[str, v1.User]:
        """The users named ``usernames``, keyed as the Authenticator spells their names.

        What :func:`bugless_core.clients.resolve_query` takes as ``users_by_name``:
        a search naming people (``assignee:alice``) resolves them from this
        cache, as the web's searches do, instead of one ``LookupUsers`` per search.
        """
        return await self.cache.by_name(usernames, self._lookup)

    async def usernames_by_id(
        self,
        user_ids: Iterable[str],
        *,
        asking: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> dict[str, str]:
        """Usernames of the given ids; unknown ids absent.

        ``asking`` is awaited with the ids the cache lacks before each
        ``GetUsers`` asks for them: the caller can use what the cache has
        meanwhile (:class:`bugless_api._coalesce.IssueReader` answers the
        issues that name nobody else).
        """
        fetch = self._get
        if asking is not None:
            get = fetch

            async def fetch(user_ids: list[str]) -> v1.UsersResponse:
                await asking(user_ids)
                return await get(user_ids)

        users = await self.cache.by_id(user_ids, fetch)
        return {user_id: user.username for user_id, user in users.items()}

    async def to_ids(self, refs: UserRefs) -> None:
        """Rewrite every username in ``refs`` to its user id.

        Raises:
            InvalidArgument: A username matches nobody; the message names the
                field and the name.
        """
        if not refs.slots:
            return
        ids = await self.ids_by_username(slot.value for slot in refs.slots)
        for slot in refs.slots:
            user_id = ids.get(username_key(slot.value))
            if user_id is None:
                raise InvalidArgument(
                    f"{slot.path}: no bugless user is named {slot.value!r}",
                    metadata={"field": slot.path, "username": slot.value},
                )
            slot.assign(user_id)

    async def to_usernames(self, refs: UserRefs) -> None:
        """Rewrite every user id in ``refs`` to the username it has now.

        An id the Authenticator no longer knows (a user removed from the
        directory) is left as it is rather than failing the whole response.
        """
        if not refs.slots:
            return
        names = await self.usernames_by_id(slot.value for slot in refs.slots)
        for slot in refs.slots:
            name = names.get(slot.value)
            if name is not None:
                slot.assign(name)
