"""Which service may call which method: service identities and the ACCESS tables.

Every bugless process presents a certificate whose URI SAN names it,
``spiffe://bugless/<service>`` (``web``, ``api``, ``notify``, ``import``,
``admin``, ``model``, ``auth``). Each servicer states, in a class attribute
``ACCESS``, which identities may call each of its RPCs; the gRPC runtime
(:class:`~bugless_core.grpc.GrpcServiceRunner`) checks the caller's identity
against that table before the handler runs, in one place for every service.

The check fails closed: an RPC of a servicer without a row (or a servicer
without a table) is refused with PERMISSION_DENIED, so a new RPC is unusable
until someone decides who may call it. A row may name:

* identities (``"web"``, ``"api"``);
* :data:`ANY_CLIENT`: any caller whose certificate the server's client CA
  verified (the API's bot-facing services: bots are people, not services);
* roles (``"@admin"``, ``"@import"``): resolved from the server's settings
  (``--admin-identities``, ``--import-identities``), so that a deployment says
  which identities run administrative or import jobs.

With ``--insecure-local`` (plaintext, for debugging on one machine) there is
no certificate, so there is no identity to check: every method with a row is
open, and the runner says so in a warning at every start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Final

from bugless_core._compat.grpclib import IServable
from bugless_proto import DESCRIPTOR_POOL

#: The URI SAN prefix of a bugless service certificate.
SPIFFE_PREFIX: Final = "spiffe://bugless/"
#: A row value: any caller with a certificate the client CA verified.
ANY_CLIENT: Final = "*"
#: The role of administrative callers (``--admin-identities``).
ADMIN_ROLE: Final = "@admin"
#: The role of import jobs (``--import-identities``).
IMPORT_ROLE: Final = "@import"
#: Every service identity bugless itself issues certificates for.
SERVICE_IDENTITIES: Final = ("web", "api", "notify", "import", "admin", "model", "auth")

#: ``{"GetIssue": {"web", "api"}}``: a servicer's ``ACCESS`` attribute, keyed by
#: the RPC's name as the ``.proto`` spells it.
AccessTable = Mapping[str, Collection[str]]

#: Methods every server adds and every verified caller may use.
_OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)


def every_method(service: str, allowed: Collection[str]) -> dict[str, frozenset[str]]:
    """One row per RPC of ``service`` (``bugless.v1.Issues``), each allowing ``allowed``.

    For a service whose rule is the same for every RPC, like the API's
    bot-facing services (:data:`ANY_CLIENT`); the RPCs come from the
    ``.proto`` descriptors, so an RPC added later gets the same row.
    """
    descriptor = DESCRIPTOR_POOL.FindServiceByName(service)
    return {method.name: frozenset(allowed) for method in descriptor.methods}


def service_identity(certificate_fields: Mapping[str, object] | None) -> str | None:
    """The service a verified certificate names, from its ``spiffe://bugless/`` URI SAN.

    ``certificate_fields`` is ``ssl.SSLSocket.getpeercert()``'s dictionary.
    A certificate with no such URI (a bot's) or with two different ones names
    no service: ``None``.
    """
    if not certificate_fields:
        return None
    names = certificate_fields.get("subjectAltName")
    found: set[str] = set()
    for entry in names if isinstance(names, tuple) else ():
        if (
            isinstance(entry, tuple)
            and len(entry) == 2
            and entry[0] == "URI"
            and isinstance(entry[1], str)
            and entry[1].startswith(SPIFFE_PREFIX)
        ):
            found.add(entry[1].removeprefix(SPIFFE_PREFIX))
    return found.pop() if len(found) == 1 else None


class AccessRules:
    """The access rows of every method one server serves, by full method name.

    Built once by the runner from its servables' ``ACCESS`` tables, with the
    roles resolved; :meth:`allows` is the one check.
    """

    def __init__(
        self,
        servables: Iterable[IServable],
        *,
        roles: Mapping[str, Collection[str]],
    ) -> None:
        """Collect the rows of ``servables``; ``roles`` maps ``@admin`` to identities.

        Raises:
            ValueError: A table names an RPC its servicer does not serve, or an
                unknown role (a typo would otherwise silently refuse callers).
        """
        self._rows: dict[str, frozenset[str]] = {}
        for servable in servables:
            table: AccessTable = getattr(servable, "ACCESS", None) or {}
            methods = {name.rsplit("/", 1)[1]: name for name in servable.__mapping__()}
            unknown = sorted(set(table) - set(methods))
            if unknown:
                raise ValueError(
                    f"{type(servable).__name__}.ACCESS names RPCs it does not serve: "
                    f"{', '.join(unknown)}"
                )
            for rpc, allowed in table.items():
                self._rows[methods[rpc]] = frozenset(_resolve(allowed, roles))

    def row(self, method_name: str) -> frozenset[str] | None:
        """Who may call ``/package.Service/Method``; ``None`` when it has no row."""
        if method_name.startswith(_OPEN_SERVICES):
            return frozenset({ANY_CLIENT})
        return self._rows.get(method_name)

    def allows(self, method_name: str, *, verified: bool, identity: str | None) -> bool:
        """Whether a caller may call ``method_name``.

        Args:
            method_name: ``/package.Service/Method``.
            verified: The caller presented a certificate the client CA verified.
            identity: The service its certificate names, if any.
        """
        row = self.row(method_name)
        if row is None or not verified:
            return False
        return ANY_CLIENT in row or (identity is not None and identity in row)


def _resolve(allowed: Collection[str], roles: Mapping[str, Collection[str]]) -> set[str]:
    resolved: set[str] = set()
    for entry in allowed:
        if entry.startswith("@"):
            if entry not in roles:
                raise ValueError(f"unknown access role {entry!r}; known: {', '.join(roles)}")
            resolved.update(roles[entry])
        else:
            resolved.add(entry)
    return resolved


def refusal_message(method_name: str, identity: str | None, *, has_row: bool) -> str:
    """What a refused caller reads: the method, who it is, and why."""
    if not has_row:
        return f"{method_name} has no access rule on this server, so nobody may call it"
    who = f"service identity {identity!r}" if identity else "a caller without a service identity"
    return f"{method_name} may not be called by {who}"
