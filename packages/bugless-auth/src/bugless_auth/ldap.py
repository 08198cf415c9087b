"""The LDAP password backend (``bugless-auth[ldap]``, bonsai in asyncio mode).

A login is two steps, the way every careful LDAP client does it: search for
the user's entry as a *service account* (the username is matched by a filter,
never glued into a DN), then bind as that entry's DN with the password. The
bind is the password check, so passwords never leave the directory and any
scheme slapd or Active Directory supports works.

The identity's subject is ``ldap:<entryUUID>``: entryUUID (RFC 4530) survives
renames and moves, so renaming ``uid=alice`` changes the username shown in
bugless but not the opaque user id the Model stores.

Failure modes are kept apart on purpose: a wrong password and an unknown user
both give ``None`` (the caller cannot tell which, so usernames cannot be
probed); a directory that is down or slow raises
:class:`~bugless_core.errors.Unavailable`, because telling a user their
correct password is wrong during an outage sends them to reset it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self

from bugless_auth._ldap_filter_syntax import (
    FilterSyntaxError,
    check_filter,
    substring_tests,
    with_every_value,
)
from bugless_auth._ldap_schema import warn_of_substring_tests
from bugless_core.auth_backend import ExternalIdentity, PasswordAuthenticator
from bugless_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from bugless_core.setting_files import FileContent, pem_certificates

if TYPE_CHECKING:
    from bugless_auth._ldap_directory import LdapDirectory, UserEntry
    from bugless_auth._ldap_group_counts import GroupCounts

_log = logging.getLogger("bugless_auth.ldap")


@dataclass(frozen=True)
class LdapSettings:
    """How to reach the directory and where users and groups live.

    Every field can come from a flag (``--authenticator-option
    ldap.<field>=VALUE``) or a ``BUGLESS_AUTH_LDAP_<FIELD>`` variable;
    :meth:`from_mapping` accepts typed values or their string forms.

    Attributes:
        urls: Server URLs, tried in order: the primary first, then read
            replicas. ``ldap://`` (optionally upgraded with StartTLS) or
            ``ldaps://``. Reads (searches, binds) go to the first server that
            is healthy; one that fails is skipped (see
            ``server_retry_seconds``). Only when every one fails is the
            directory reported unavailable. The backend never writes.
        base_dn: Subtree searched for users.
        bind_dn: DN of the service account used to search. Empty means an
            anonymous search, for directories that allow it.
        bind_password: Password of ``bind_dn``.
        user_filter: Filter selecting one user; ``{username}`` is replaced by
            the login name, escaped per RFC 4515 so ``*`` or ``)(`` in a
            username matches literally and cannot widen the search. The
            re-sync and group counts search every user with
            :attr:`every_user_filter`, the filter it is for any username.
        username_attribute: Attribute holding the login name as the directory
            spells it (``uid``; ``sAMAccountName`` on Active Directory).
        display_name_attribute: Attribute shown on user chips.
        email_attribute: Attribute holding the mail address.
        subject_attribute: Stable, rename-proof key of an entry: ``entryUUID``
            on OpenLDAP, ``objectGUID`` on Active Directory (binary; formatted
            as a UUID).
        group_attribute: Attribute on the user entry listing group DNs
            (``memberOf``). Used when ``group_search_base`` is empty; an empty
            value with no group search means no groups.
        group_search_base: When set, groups are found by searching here with
            ``group_search_filter`` instead of reading ``group_attribute``;
            for directories without a memberOf overlay.
        group_search_filter: Filter for the group search; ``{dn}`` is the
            user's DN and ``{username}`` the login name, both escaped.
        group_name_attribute: Attribute naming a group (``cn``). Group DNs
            from ``group_attribute`` are reduced to this RDN's value.
        group_member_attribute: Attribute of a group entry listing its
            members, read to count them (CountGroupMembers) in group-search
            mode: ``member`` (DNs, groupOfNames), ``uniqueMember`` (DNs,
            groupOfUniqueNames) or ``memberUid`` (usernames, posixGroup).
        group_entry_base: Subtree where group entries are found by name to
            count their members in memberOf mode (``group_search_base`` empty),
            e.g. ``ou=groups,dc=example,dc=com``. Empty: a group's members
            in the directory are not counted (the count says "unknown", not 0).
        group_entry_filter: A filter a group's entry must also match to be
            counted, AND-ed with ``group_name_attribute``=NAME, so an entry
            of another kind named as the group (a person with ``cn: eng``
            under the same base) is not taken for it, nor makes the count
            unknown (two entries of one name). Empty: the mode's default,
            in memberOf mode ``(|(objectClass=groupOfNames)
            (objectClass=groupOfUniqueNames)(objectClass=group))`` (the
            classes memberOf overlays and Active Directory list), in
            group-search mode none; ``(objectClass=*)`` takes any entry.
        group_count_seconds: How long a group's count read from the directory
            is kept and answered again, per Authenticator replica: access-list
            forms ask on every view. 0 reads the directory every time.
        group_count_limit: The most member values (and users) one count
            reads; a bigger group's count is "unknown" rather than a partial
            number.
        start_tls: Upgrade ``ldap://`` connections with StartTLS; a server
            that refuses counts as unreachable, never as a plaintext fallback.
        ca_file: PEM file of CAs trusted for the server certificate; None
            uses the system store.
        tls_verify: Verify the server certificate (always, in production).
        pool_size: Service-account connections kept open per server.
        connect_timeout: Seconds to open and bind a connection.
        operation_timeout: Seconds for one search.
        pool_wait_seconds: The longest a sign-in (or a re-sync search)
            waits for a free service-account connection to one server when
            all ``pool_size`` are busy, before it tries the next server; when
            every server's pool stays busy that long, it answers UNAVAILABLE
            (retry later). Queueing is not waiting on a dead server: a pool
            busy for this long means the directory or this replica is
            overloaded, and a longer queue only makes every sign-in slower.
            So a sign-in spends at most ``pool_wait_seconds`` queueing per
            server, on top of its search (``operation_timeout``) and its
            bind (``connect_timeout``). It used to wait ``operation_timeout``
            here too, without saying so: twice that per server. Each wait
            that ran out is counted in
            ``bugless_auth_ldap_pool_exhausted_total{server}`` and logged as
            the pool's outage (one WARNING per streak, with the count).
        server_retry_seconds: How long a server that failed (a connect error
            or a timeout) is skipped. A background probe (an anonymous bind,
            bounded by ``connect_timeout``) checks it every
            ``server_retry_seconds``, and it rejoins the rotation at its
            configured place when one answers. While it is skipped, sign-ins
            never wait on it unless every other server fails too; without
            this, every sign-in would wait out the timeouts of a hung
            primary. The state is per process.
        resync_seconds: How often the Authenticator re-reads, from the
            directory, every user it has seen sign in here (the directory
            re-sync, :mod:`bugless_auth.resync`): renames and group changes
            are applied, and a user the directory no longer lists (deleted,
            or excluded by ``user_filter``, e.g. an account lock) is disabled
            and signed out everywhere. 0 turns it off.
        label: Text of the sign-in button / form heading.
    """

    urls: tuple[str, ...]
    base_dn: str
    bind_dn: str = ""
    bind_password: str = ""
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={username}))"
    username_attribute: str = "uid"
    display_name_attribute: str = "displayName"
    email_attribute: str = "mail"
    subject_attribute: str = "entryUUID"
    group_attribute: str = "memberOf"
    group_search_base: str = ""
    group_search_filter: str = "(&(objectClass=groupOfNames)(member={dn}))"
    group_name_attribute: str = "cn"
    group_member_attribute: str = "member"
    group_entry_base: str = ""
    group_entry_filter: str = ""
    group_count_seconds: float = 60.0
    group_count_limit: int = 1000
    start_tls: bool = False
    ca_file: str | None = None
    tls_verify: bool = True
    pool_size: int = 4
    connect_timeout: float = 5.0
    operation_timeout: float = 5.0
    pool_wait_seconds: float = 2.0
    server_retry_seconds: float = 5.0
    resync_seconds: float = 300.0
    label: str = "LDAP"

    def __post_init__(self) -> None:
        if not self.urls:
            raise InvalidArgument("ldap urls: at least one ldap:// or ldaps:// URL is required")
        for url in self.urls:
            if not url.startswith(("ldap://", "ldaps://")):
                raise InvalidArgument(f"ldap urls: {url!r} is not an ldap:// or ldaps:// URL")
        if not self.base_dn:
            raise InvalidArgument("ldap base_dn: required, e.g. 'ou=people,dc=example,dc=com'")
        if "{username}" not in self.user_filter:
            raise InvalidArgument(
                f"ldap user_filter: {self.user_filter!r} lacks the {{username}} placeholder"
            )
        if self.pool_size < 1:
            raise InvalidArgument(f"ldap pool_size: {self.pool_size} is not a positive number")
        for name, seconds in (
            ("connect_timeout", self.connect_timeout),
            ("operation_timeout", self.operation_timeout),
        ):
            if not math.isfinite(seconds) or seconds <= 0:
                raise InvalidArgument(f"ldap {name}: {seconds} is not a positive number of seconds")
        if not math.isfinite(self.pool_wait_seconds) or self.pool_wait_seconds <= 0:
            raise InvalidArgument(
                f"ldap pool_wait_seconds: {self.pool_wait_seconds} is not a positive "
                "number of seconds"
            )
        if not math.isfinite(self.server_retry_seconds) or self.server_retry_seconds <= 0:
            raise InvalidArgument(
                f"ldap server_retry_seconds: {self.server_retry_seconds} is not a positive "
                "number of seconds"
            )
        if not math.isfinite(self.resync_seconds) or self.resync_seconds < 0:
            raise InvalidArgument(
                f"ldap resync_seconds: {self.resync_seconds} is not a number of seconds "
                "(0 turns the directory re-sync off)"
            )

        if not math.isfinite(self.group_count_seconds) or self.group_count_seconds < 0:
            raise InvalidArgument(
                f"ldap group_count_seconds: {self.group_count_seconds} is not a number of "
                "seconds (0 reads the directory at every count)"
            )
        if self.group_count_limit < 1:
            raise InvalidArgument(
                f"ldap group_count_limit: {self.group_count_limit} is not a positive number"
            )
        self._check_filters()
        if not self.group_member_attribute:
            raise InvalidArgument(
                "ldap group_member_attribute: required (member, uniqueMember or memberUid)"
            )

    def _check_filters(self) -> None:
        """Refuse a filter setting the code sends that is not one LDAP filter.

        Every filter is combined with others when sent (``user_filter``
        AND-ed with a re-sync's or a count's conditions, as
        :attr:`every_user_filter` there; ``group_entry_filter`` with a
        group's name) or sent at every sign-in, so a malformed one changes
        what it selects (an early ``)`` closes the AND) or fails every
        request long after the service started; it is refused at start,
        naming the setting. Only the filters these settings make the code
        send are checked: ``group_search_filter`` without
        ``group_search_base``, and ``group_entry_filter`` where no group is
        counted (neither base set, or memberOf mode with no
        ``group_attribute``), are never read, so a value there cannot fail a
        request; they are checked once a base makes them used.
        """
        _check_filter(
            "user_filter",
            self.user_filter,
            "'(&(objectClass=inetOrgPerson)(uid={username}))'",
            placeholders=("{username}",),
        )
        if self.group_search_base:
            _check_filter(
                "group_search_filter",
                self.group_search_filter,
                "'(&(objectClass=groupOfNames)(member={dn}))'",
                placeholders=("{dn}", "{username}"),
            )
        counted = self.group_search_base or (self.group_attribute and self.group_entry_base)
        if self.group_entry_filter and counted:
            _check_filter(
                "group_entry_filter",
                self.group_entry_filter,
                "'(objectClass=groupOfNames)' or "
                "'(|(objectClass=groupOfNames)(objectClass=posixGroup))' (empty: the mode's "
                "default)",
            )

    @property
    def every_user_filter(self) -> str:
        """``user_filter`` for every username: what the re-sync and group counts search.

        Putting ``*`` for ``{username}`` would make no filter where it is
        the value of an extensible match (``(uid:caseExactMatch:={username})``)
        or ``~=``, or next to a ``*``; :func:`with_every_value` makes that
        item a presence test instead, so every filter sign-ins take is also
        sent here, selecting every entry it admits for some username.
        """
        return with_every_value(self.user_filter, "{username}")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> LdapSettings:
        """Build settings from flags / env values, refusing unknown keys.

        Lists may be given as comma-separated strings, booleans as
        ``true``/``false``/``1``/``0``, numbers as strings.
        """
        known = {f.name: f for f in fields(cls)}
        # Strings come from an operator (a flag, an env var) and a typo there
        # must not pass silently; other values are objects the service hands
        # every backend (its identity store, say) and are not ours to judge.
        unknown = sorted(k for k, v in config.items() if k not in known and isinstance(v, str))
        if unknown:
            raise InvalidArgument(
                f"ldap settings: unknown {', '.join(unknown)}; known are {', '.join(known)}"
            )
        values: dict[str, Any] = {
            name: _coerce(name, str(known[name].type), value)
            for name, value in config.items()
            if name in known
        }
        missing = [n for n in ("urls", "base_dn") if n not in values]
        if missing:
            raise InvalidArgument(f"ldap settings: {', '.join(missing)} required")
        return cls(**values)


def _coerce(name: str, type_name: str, value: Any) -> Any:
    """Turn a flag or env string into the field's type; typed values pass."""
    if not isinstance(value, str):
        return tuple(value) if type_name.startswith("tuple") else value
    try:
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if type_name == "bool":
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes"}
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
    except ValueError:
        raise InvalidArgument(f"ldap {name}: {value!r} is not a valid {type_name}") from None
    if type_name == "str | None":
        return value or None
    return value


def _format_subject_value(value: Any) -> str:
    """Format a subject value: entryUUID is text, objectGUID (AD) is 16 raw bytes."""
    if isinstance(value, bytes):
        if len(value) == 16:
            return str(uuid.UUID(bytes_le=value))
        return value.hex()
    return str(value)


def _check_filter(
    setting: str, value: str, example: str, *, placeholders: tuple[str, ...] = ()
) -> None:
    r"""Refuse ``value`` of the filter setting ``setting`` unless it is one LDAP filter.

    Args:
        setting: The setting's name, for the message.
        value: Its value, placeholders and all.
        example: A value of the setting's shape, for the message.
        placeholders: What the code replaces by an escaped value: taken as
            a value (a non-empty one, as any username or DN is) wherever a
            value may be.

    Raises:
        InvalidArgument: ``value`` is not one filter
            (:func:`~bugless_auth._ldap_filter_syntax.check_filter`); the
            message says what is wrong where and gives ``example``.
    """
    try:
        check_filter(value, placeholders)
    except FilterSyntaxError as exc:
        raise InvalidArgument(
            f"ldap {setting}: {value!r} is not an LDAP filter (RFC 4515): {exc}; e.g. {example}"
            " (a parenthesis in a value is written \\28 or \\29, a '*' \\2a)"
        ) from None


def _is_plausible_username(username: str) -> bool:
    # Control characters (NUL above all) have no business in a login name, and
    # bonsai's filter escaping writes NUL in a form slapd rejects as a bad filter.
    return bool(username) and len(username) <= 256 and username.isprintable()


#: Wrong-password timings kept to pad unknown-user attempts to.
_REFUSALS_KEPT = 64
#: Never hold a sign-in longer than this to match a refusal's time.
_MAX_PADDING_SECONDS = 2.0


class LdapAuthenticator(PasswordAuthenticator):
    """Checks usernames and passwords against an LDAP directory.

    Service-account connections are pooled per server; each password check
    opens one short connection bound as the user, because a bind changes
    who a connection is and a pooled connection must stay the service account.
    """

    name: ClassVar[str] = "ldap"
    file_options: ClassVar[Mapping[str, FileContent]] = {"ca_file": pem_certificates}

    def __init__(self, settings: LdapSettings) -> None:
        try:
            from bugless_auth._ldap_directory import LdapDirectory  # noqa: PLC0415
            from bugless_auth._ldap_group_counts import GroupCounts  # noqa: PLC0415
        except ImportError as exc:
            raise FailedPrecondition(
                f"the ldap authenticator needs bonsai ({exc}): "
                "pip install 'bugless-auth[ldap]' (Debian: libldap2-dev libsasl2-dev to build it)"
            ) from exc
        self.settings = settings
        self._directory: LdapDirectory = LdapDirectory(settings)
        self._group_counts: GroupCounts = GroupCounts(self._directory, settings)
        #: How long recent wrong passwords of existing users took (seconds).
        self._refusals: collections.deque[float] = collections.deque(maxlen=_REFUSALS_KEPT)
        #: The start's schema check of ``user_filter`` (only for a filter that needs one).
        self._schema_check: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build the backend; connections open lazily on the first login.

        A directory that is down at start-up must not stop the Authenticator
        (other backends still work); it surfaces as ``Unavailable`` per login.
        """
        backend = cls(LdapSettings.from_mapping(config))
        if substring_tests(backend.settings.user_filter, "{username}"):
            backend._schema_check = asyncio.create_task(
                warn_of_substring_tests(backend._directory, backend.settings.user_filter)
            )
        return backend

    async def close(self) -> None:
        """Stop the background probes and counts, and close every pooled connection."""
        if self._schema_check is not None:
            self._schema_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._schema_check
        await self._group_counts.close()
        await self._directory.close()

    @property
    def display_name(self) -> str:
        """The configured label of the sign-in form."""
        return self.settings.label

    @property
    def resync_seconds(self) -> float | None:
        """``resync_seconds`` of the settings; None when 0 (off)."""
        return self.settings.resync_seconds or None

    async def current_identities(self, subjects: Sequence[str]) -> Mapping[str, ExternalIdentity]:
        """Who each ``ldap:`` subject is in the directory now; missing ones are gone.

        Raises:
            Unavailable: no server answered, or the service account cannot search.
        """
        prefix = "ldap:"
        values = [s.removeprefix(prefix) for s in subjects if s.startswith(prefix)]
        if not values:
            return {}
        entries = await self._directory.users_with_subjects(values)
        if not entries and not await self._directory.lists_anyone():
            raise self._lists_nobody(len(values))
        found: dict[str, ExternalIdentity] = {}
        for entry in entries:
            username = str(entry.first(self.settings.username_attribute) or "")
            if not username:
                continue
            identity = await self._identity(entry, username)
            found[identity.subject] = identity
        return found

    def _lists_nobody(self, known: int) -> Unavailable:
        """The error of a directory whose every-user search lists no entry at all.

        Taken as "every user gone", the re-sync would disable all of them
        (its own guard spares only batches of several users): a wrong
        ``base_dn``, a service account that lost read access, or an
        equality item of ``user_filter`` that the every-user form makes a
        substring test the attribute has no rule for. So the round stops
        here, logged as an error naming the filter.
        """
        s = self.settings
        every = s.every_user_filter
        tests = substring_tests(s.user_filter, "{username}")
        hint = (
            f"; {', '.join(item for _, item in tests)} is a substring test there (for "
            "{username} at sign-in an equality test), which matches no entry where the "
            "server's schema gives the attribute no substring matching rule"
            if tests
            else ""
        )
        _log.error(
            "ldap re-sync: user_filter for every username, %s, lists no entry under %s, so "
            "the %d known users asked for would all be disabled; refused, nobody disabled "
            "(check base_dn, user_filter and the service account's read access%s)",
            every,
            s.base_dn,
            known,
            hint,
        )
        return Unavailable(
            f"ldap: user_filter for every username, {every}, lists no entry under "
            f"{s.base_dn}; the re-sync disables nobody until it does{hint}"
        )

    async def group_member_counts(self, groups: Sequence[str]) -> Mapping[str, int | None]:
        """Enabled directory members of each group it holds; None where it cannot tell now.

        See :mod:`bugless_auth._ldap_group_counts` (cache, bounds) and
        ``GroupReader.count`` in :mod:`bugless_auth._ldap_group_reads` (how each mode
        reads a group).
        """
        return await self._group_counts.counts(groups)

    async def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """Return who ``username`` is if ``password`` binds as them, else None.

        An empty password is refused before any network traffic: in LDAP a
        simple bind with a DN and no password is an *unauthenticated* bind,
        which many servers (Active Directory among them) answer with success.

        Raises:
            Unavailable: no configured server could be reached in time, or the
                service account could not search.
        """
        if not password or not _is_plausible_username(username):
            return None
        started = time.monotonic()
        user = await self._directory.find_user(username)
        if user is None:
            # Bind anyway, as a DN that cannot exist, then wait out what a
            # wrong password has recently cost, so response times do not tell
            # which usernames exist.
            decoy = f"cn=bugless-decoy-{secrets.token_hex(8)},{self.settings.base_dn}"
            await self._directory.bind(None, decoy, password)
            await self._as_long_as_a_refusal(started)
            return None
        if not await self._directory.bind(user.url, user.dn, password):
            self._refusals.append(time.monotonic() - started)
            return None
        return await self._identity(user, username)

    async def _as_long_as_a_refusal(self, started: float) -> None:
        """Sleep until a wrong password's typical time has passed since ``started``.

        A directory answers a bind as a DN that does not exist without checking
        any password, and may do more for a real account (verify its hash,
        record the failure for a lockout policy): in CI, slapd refused a
        nonexistent DN in 1.2 ms and a real user's wrong password in 11 ms,
        a gap an attacker can time. The median of the recent refusals is the
        target, so an unknown user's attempts are drawn from the same times.
        """
        if not self._refusals:
            return
        remaining = statistics.median(self._refusals) - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(min(remaining, _MAX_PADDING_SECONDS))

    async def _identity(self, user: UserEntry, username: str) -> ExternalIdentity:
        s = self.settings
        raw_subject = user.first(s.subject_attribute)
        if raw_subject is None:
            # Without a stable key we would fall back to the DN and lose the
            # user's id on the next rename: fail loudly instead.
            raise Unavailable(
                f"the LDAP entry {user.dn} has no {s.subject_attribute}; "
                "check subject_attribute and the service account's read access"
            )
        listed = user.first(s.username_attribute)
        return ExternalIdentity(
            subject=f"ldap:{_format_subject_value(raw_subject)}",
            username=str(listed or username),
            display_name=str(user.first(s.display_name_attribute) or ""),
            email=str(user.first(s.email_attribute) or ""),
            groups=await self._directory.groups(user, username),
            username_from=(
                f"LDAP attribute {s.username_attribute}"
                if listed
                else f"the name typed at sign-in (the entry has no {s.username_attribute})"
            ),
        )


__all__ = ["LdapAuthenticator", "LdapSettings"]
