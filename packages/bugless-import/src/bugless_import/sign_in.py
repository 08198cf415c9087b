"""Signing the import in: whose session it runs in, and naming a service it cannot reach."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bugless_core.clients import call
from bugless_core.errors import PermissionDenied, Unavailable
from bugless_core.service_address import ServiceAddress
from bugless_import.settings import ImportSettings
from bugless_proto import v1


@contextmanager
def reaching(service: str, address: ServiceAddress, settings: ImportSettings) -> Iterator[None]:
    """A service the run cannot reach, named with its address (``--model``, ``--auth``).

    The first calls to each go through here: "a backend service is
    unreachable: Connection lost" named neither which nor why; a plaintext
    call to a TLS service fails just so.
    """
    try:
        yield
    except Unavailable as exc:
        hint = "" if settings.tls_ca else "; if it serves TLS, give --tls-ca, --tls-cert, --tls-key"
        raise Unavailable(f"{service} at {address.authority}: {exc.message}{hint}") from exc


async def session_token(auth: v1.AuthenticatorStub, settings: ImportSettings) -> str:
    """``--token``, or the token of a session ``--user`` signs in with its password."""
    if settings.token:
        return settings.token
    if not settings.user:
        raise PermissionDenied(
            "who runs the import? give --user USERNAME (the password is asked for) or --token "
            "(BUGLESS_IMPORT_TOKEN), a session token; the user needs admin and import_issues"
        )
    result = await call(
        auth.authenticate_password,
        v1.AuthenticatePasswordRequest(username=settings.user, password=settings.password),
    )
    return result.token


async def identity(auth: v1.AuthenticatorStub, token: str) -> v1.Caller:
    """The caller the run acts as: the token's user, who must hold admin and import_issues."""
    validated = await call(auth.validate_token, v1.ValidateTokenRequest(token=token))
    missing = [p for p in ("admin", "import_issues") if p not in validated.permissions]
    if missing or validated.user is None:
        raise PermissionDenied(
            f"the token's user lacks the {' and '.join(missing)} permission(s) an import needs"
        )
    return v1.Caller(
        user_id=validated.user.user_id,
        groups=list(validated.groups),
        admin=True,
        import_issues=True,
    )
