"""The bonsai side of the LDAP backend: searches, binds and failover across servers.

Kept apart from :mod:`bugless_auth.ldap` so that module imports without
bonsai: the plugin registers every backend class on every install, and only
a deployment that enables ``ldap`` needs the ``bugless-auth[ldap]`` extra.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import bonsai
import bonsai.errors
from prometheus_client import Counter

from bugless_auth._bonsai_compat import allow_hash_inside_values
from bugless_auth._ldap_breaker import ServerBreakers
from bugless_auth._ldap_dn import parse_dn
from bugless_auth._ldap_pool import CONNECTION_ERRORS, PoolExhausted, ServiceConnectionPool
from bugless_auth._ldap_probe import ldap_answers, probe_ssl_context
from bugless_core.errors import Unavailable
from bugless_core.outage import OutageLog

if TYPE_CHECKING:
    from bugless_auth.ldap import LdapSettings

_log = logging.getLogger("bugless_auth.ldap")

# Before any search: an entry named with a '#' (cn=C# developers) would fail it.
allow_hash_inside_values()

#: Requests that found a server's service-account pool busy for all of
#: ``pool_wait_seconds``. On the process's default registry, which the
#: Authenticator's ``/metrics`` serves (the backend is handed no registry);
#: labelled by server URL, a handful per deployment.
POOL_EXHAUSTED = Counter(
    "bugless_auth_ldap_pool_exhausted_total",
    "Requests that found every service-account connection to an LDAP server busy for "
    "pool_wait_seconds (they tried the next server, else answered UNAVAILABLE), by server.",
    ["server"],
)

_SUBTREE = 2

T = TypeVar("T")


@dataclass(frozen=True)
class UserEntry:
    """A user's entry as the service account read it, and which server answered."""

    url: str
    dn: str
    attributes: Mapping[str, Any]

    def first(self, attribute: str) -> Any:
        """First value of an attribute, or None (bonsai keys are case-insensitive)."""
        values = self.attributes.get(attribute)
        return values[0] if values else None


def group_name(dn: str, name_attribute: str) -> str:
    r"""``cn=engineers,ou=groups,...`` → ``engineers`` (the whole DN if not readable).

    The value as the group's entry holds it (:func:`~bugless_auth._ldap_dn.parse_dn`):
    ``cn=Sales\2C EMEA`` is ``Sales, EMEA``, the name group-search mode
    reads from the entry's attribute, so a group is one name in both modes.
    """
    rdns = parse_dn(dn)
    if not rdns:
        return dn
    for attribute, value in rdns[0]:
        if attribute.lower() == name_attribute.lower():
            return value
    return rdns[0][0][1]


#: RFC 4515's escapes of an assertion value: every character a filter reads
#: specially, as a backslash and two hex digits.
_FILTER_ESCAPES = str.maketrans({"\\": "\\5c", "*": "\\2a", "(": "\\28", ")": "\\29", "\0": "\\00"})


def escape_filter_exp(value: str) -> str:
    r"""``value`` as an RFC 4515 assertion value, matching exactly that string.

    Not bonsai's ``escape_filter_exp``, which writes NUL as ``\0``: the
    server refuses the filter (a group name with a NUL was counted
    "unknown" rather than absent), or reads ``\0`` and the next two
    characters as one byte and matches another value.
    """
    return value.translate(_FILTER_ESCAPES)


def _subject_filter_value(attribute: str, value: str) -> str:
    """A subject's value as an assertion value: objectGUID is 16 bytes, escaped."""
    if attribute.lower() == "objectguid":
        try:
            raw = uuid.UUID(value).bytes_le
        except ValueError:
            return escape_filter_exp(value)
        return "".join(f"\\{b:02x}" for b in raw)
    return escape_filter_exp(value)


class LdapDirectory:
    """The configured servers, with a service-account pool and a breaker each.

    Every operation goes to the first healthy server in configured order
    (see :class:`~bugless_auth._ldap_breaker.ServerBreakers`); a server that
    fails to connect or times out is skipped until a background probe finds
    it answering again. Every method raises
    :class:`~bugless_core.errors.Unavailable` when no server answers; none of
    them ever reports an outage as "not found".
    """

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self._pools = {
            url: ServiceConnectionPool(
                self._client(url, settings.bind_dn, settings.bind_password),
                size=settings.pool_size,
                connect_timeout=settings.connect_timeout,
            )
            for url in settings.urls
        }
        # Per server: an exhausted pool is logged as one outage, not once per request.
        self._exhaustion = {
            url: OutageLog(
                f"ldap pool for {url}",
                logger=_log,
                meanwhile="requests try the next server, else answer UNAVAILABLE",
                unit="requests",
            )
            for url in settings.urls
        }
        #: Exhaustions per server since this directory was opened (in the log lines).
        self.exhaustions = dict.fromkeys(settings.urls, 0)
        self.breakers = ServerBreakers(
            settings.urls, retry_seconds=settings.server_retry_seconds, probe=self._probe
        )
        self._probe_tls: ssl.SSLContext | None = None

    async def _probe(self, url: str) -> bool:
        s = self.settings
        if self._probe_tls is None:
            self._probe_tls = probe_ssl_context(ca_file=s.ca_file, verify=s.tls_verify)
        return await ldap_answers(url, within=s.connect_timeout, ssl_context=self._probe_tls)

    async def close(self) -> None:
        """Stop the probes and close every pooled service-account connection."""
        await self.breakers.close()
        for pool in self._pools.values():
            pool.close()

    def _client(self, url: str, bind_dn: str, password: str) -> bonsai.LDAPClient:
        s = self.settings
        client = bonsai.LDAPClient(url, tls=s.start_tls and url.startswith("ldap://"))
        if bind_dn:
            client.set_credentials("SIMPLE", user=bind_dn, password=password)
        if url.startswith("ldaps://") or s.start_tls:
            client.set_cert_policy("demand" if s.tls_verify else "never")
            if s.ca_file:
                client.set_ca_cert(s.ca_file)
        if s.subject_attribute.lower() == "objectguid":
            client.set_raw_attributes([s.subject_attribute])
        return client

    def _user_attributes(self) -> list[str]:
        s = self.settings
        attributes = [
            s.username_attribute,
            s.display_name_attribute,
            s.email_attribute,
            s.subject_attribute,
        ]
        if s.group_attribute and not s.group_search_base:
            attributes.append(s.group_attribute)
        return attributes

    async def users_with_subjects(self, values: list[str]) -> list[UserEntry]:
        """The entries ``user_filter`` admits whose subject attribute is one of ``values``.

        One search (``values`` should be a batch of tens): the user filter
        for every username (``LdapSettings.every_user_filter``), and an OR of
        the subject values. An entry
        that was deleted, or that no longer matches the filter (an account
        lock the filter excludes), is simply not among the results.

        Raises:
            Unavailable: no server answered (never an empty answer).
        """
        s = self.settings
        wanted = "".join(
            f"({s.subject_attribute}={_subject_filter_value(s.subject_attribute, v)})"
            for v in values
        )
        query = f"(&{s.every_user_filter}(|{wanted}))"
        attributes = self._user_attributes()

        async def search(conn: Any) -> list[Any]:
            result: list[Any] = await conn.search(
                s.base_dn, _SUBTREE, query, attributes, timeout=s.operation_timeout
            )
            return result

        url, entries = await self.on_any_server(search)
        return [UserEntry(url=url, dn=str(e["dn"]), attributes=e) for e in entries]

    async def lists_anyone(self) -> bool:
        """Whether ``user_filter`` for every username admits any entry under ``base_dn``.

        The re-sync asks when a batch of known users found nobody: a filter
        or base that lists no one at all is a misconfiguration (or an
        equality item the every-user form makes a substring test the
        attribute cannot match), not every user gone. One search, no
        attributes, at most one entry.

        Raises:
            Unavailable: no server answered.
        """
        s = self.settings

        async def search(conn: Any) -> list[Any]:
            try:
                result: list[Any] = await conn.search(
                    s.base_dn,
                    _SUBTREE,
                    s.every_user_filter,
                    ["1.1"],
                    timeout=s.operation_timeout,
                    sizelimit=1,
                )
            except bonsai.errors.SizeLimitError:
                return [True]  # more than one
            return result

        _, entries = await self.on_any_server(search)
        return bool(entries)

    async def attribute_types(self) -> list[str]:
        """The server's ``attributeTypes`` (RFC 4512 subschema): two base searches.

        Empty where the server names no subschema entry or the service
        account may not read it.

        Raises:
            Unavailable: no server answered.
        """
        timeout = self.settings.operation_timeout

        async def search(conn: Any) -> list[Any]:
            try:
                (root,) = await conn.search(
                    "", 0, "(objectClass=*)", ["subschemaSubentry"], timeout=timeout
                )
                (dn,) = root["subschemaSubentry"]
                result: list[Any] = await conn.search(
                    str(dn), 0, "(objectClass=subschema)", ["attributeTypes"], timeout=timeout
                )
            except (bonsai.errors.NoSuchObjectError, bonsai.errors.InsufficientAccess):
                return []  # the service account may not read it: nothing to tell
            except (KeyError, ValueError):
                return []  # no root DSE, or one naming no single subschema entry
            return result

        _, entries = await self.on_any_server(search)
        return [str(v) for e in entries for v in e.get("attributeTypes", [])]

    async def find_user(self, username: str) -> UserEntry | None:
        """Search for the user as the service account; None unless exactly one matches."""
        s = self.settings
        query = s.user_filter.replace("{username}", escape_filter_exp(username))
        attributes = self._user_attributes()

        async def search(conn: Any) -> list[Any]:
            result: list[Any] = await conn.search(
                s.base_dn, _SUBTREE, query, attributes, timeout=s.operation_timeout, sizelimit=2
            )
            return result

        try:
            url, entries = await self.on_any_server(search)
        except bonsai.errors.SizeLimitError:
            _log.warning("ldap user_filter matched several entries for %r; refused", username)
            return None
        if len(entries) != 1:
            return None
        return UserEntry(url=url, dn=str(entries[0]["dn"]), attributes=entries[0])

    async def bind(self, first_url: str | None, dn: str, password: str) -> bool:
        """Whether ``password`` binds as ``dn``, on ``first_url`` if it is healthy.

        ``first_url`` is the server that found the entry, so a replica that
        has not yet received a new entry is not asked for it; None takes the
        first healthy server. The bind runs on a connection of its own,
        closed at once: binding changes who a connection is, and pooled ones
        must stay the service account.
        """
        s = self.settings
        for url in self.breakers.order(prefer=first_url):
            client = self._client(url, dn, password)
            try:
                conn = await client.connect(is_async=True, timeout=s.connect_timeout)
            except (bonsai.errors.AuthenticationError, bonsai.errors.UnwillingToPerform):
                self.breakers.record_success(url)
                return False
            except CONNECTION_ERRORS as exc:
                # Its outage is logged once, by its breaker (ServerBreakers).
                _log.debug("ldap server %s unreachable for a user bind: %r", url, exc)
                self.breakers.record_failure(url, exc)
                continue
            except bonsai.errors.LDAPError as exc:
                raise Unavailable(f"the LDAP server {url} failed a bind: {exc}") from exc
            conn.close()
            self.breakers.record_success(url)
            return True
        raise self._unavailable()

    async def groups(self, user: UserEntry, username: str) -> tuple[str, ...]:
        """Group names of the user: from memberOf, or from a group search."""
        s = self.settings
        if not s.group_search_base:
            if not s.group_attribute:
                return ()
            dns = user.attributes.get(s.group_attribute) or []
            return tuple(sorted({group_name(str(dn), s.group_name_attribute) for dn in dns}))
        query = s.group_search_filter.replace("{dn}", escape_filter_exp(user.dn)).replace(
            "{username}", escape_filter_exp(username)
        )

        async def search(conn: Any) -> list[Any]:
            result: list[Any] = await conn.search(
                s.group_search_base,
                _SUBTREE,
                query,
                [s.group_name_attribute],
                timeout=s.operation_timeout,
            )
            return result

        _, found = await self.on_any_server(search, prefer=user.url)
        names = {str((g.get(s.group_name_attribute) or [""])[0]) for g in found}
        return tuple(sorted(n for n in names if n))

    async def on_any_server(
        self,
        operation: Callable[[Any], Awaitable[list[Any]]],
        *,
        prefer: str | None = None,
    ) -> tuple[str, list[Any]]:
        """Run a search on the first healthy server that answers.

        A server that fails to connect or times out opens its breaker; an
        exhausted pool does not (a busy server is not a dead one).

        Raises:
            Unavailable: every server failed to connect, timed out, or refused
                the service account.
        """
        s = self.settings
        for url in self.breakers.order(prefer=prefer):
            try:
                result = await self._run_pooled(url, operation)
            except PoolExhausted:
                continue
            except CONNECTION_ERRORS as exc:
                # Its outage is logged once, by its breaker (ServerBreakers).
                _log.debug("ldap server %s unreachable: %r", url, exc)
                self.breakers.record_failure(url, exc)
                continue
            except (
                bonsai.errors.AuthenticationError,
                bonsai.errors.InsufficientAccess,
                bonsai.errors.UnwillingToPerform,
            ) as exc:
                raise Unavailable(
                    f"the LDAP service account {s.bind_dn or '(anonymous)'} cannot search "
                    f"{url}: {exc}; check bind_dn and bind_password"
                ) from exc
            except bonsai.errors.NoSuchObjectError as exc:
                raise Unavailable(
                    f"the LDAP search base does not exist on {url}: {exc}; check base_dn"
                ) from exc
            except bonsai.errors.SizeLimitError:
                raise
            except bonsai.errors.LDAPError as exc:
                # A filter the server rejects, a referral, a protocol error: a
                # configuration or server problem, never the user's password.
                raise Unavailable(
                    f"the LDAP server {url} refused the search: {exc}; "
                    "check user_filter, group_search_filter and group_entry_filter"
                ) from exc
            self.breakers.record_success(url)
            return url, result
        raise self._unavailable()

    async def _run_pooled(self, url: str, operation: Callable[[Any], Awaitable[T]]) -> T:
        """``operation`` on a pooled connection to ``url``, its exhaustion logged as an outage.

        Under overload every request meets the exhausted pool: one WARNING
        when that starts, a reminder a minute with the count, and one INFO
        when a request gets a connection again (whatever the operation then
        does with it: a server error is the breaker's to log), rather than a
        WARNING per request exactly when the operator is busiest.

        Each exhaustion is counted (:data:`POOL_EXHAUSTED`, and
        :attr:`exhaustions`, whose total the log lines carry).

        Raises:
            PoolExhausted: no connection became free within ``pool_wait_seconds``.
            What :meth:`ServiceConnectionPool.run` raises otherwise.
        """
        wait = self.settings.pool_wait_seconds
        exhaustion = self._exhaustion[url]
        try:
            result = await self._pools[url].run(operation, acquire_timeout=wait)
        except PoolExhausted:
            self.exhaustions[url] += 1
            POOL_EXHAUSTED.labels(url).inc()
            exhaustion.failed(
                f"exhausted, no connection free within {wait:g} s "
                f"(pool_wait_seconds; {self.exhaustions[url]} since start)",
                stacklevel=3,
            )
            raise
        except Exception:
            exhaustion.recovered(stacklevel=3)
            raise
        exhaustion.recovered(stacklevel=3)
        return result

    def _unavailable(self) -> Unavailable:
        urls = ", ".join(self.settings.urls)
        return Unavailable(f"the LDAP directory at {urls} is unreachable; try again shortly")
