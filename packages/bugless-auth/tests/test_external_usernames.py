"""Usernames a directory hands bugless follow the local grammar, or the sign-in is refused.

A real slapd and the real OIDC provider fixture behind the real Authenticator
over gRPC: a person whose directory name has a space, a leading "@" or mixes
scripts is told why they cannot sign in, the operator's log names the
attribute or claim and the value, and no user is written.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from grpc_errors import expect_status
from grpclib.const import Status
from oidc_provider import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OidcProvider

from bugless_auth.tls import parse_mapping
from bugless_proto import v1
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd, ssha

if TYPE_CHECKING:
    from auth_support import AuthServer, StartAuth

pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")

CYRILLIC_A = "\u0430"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


async def add_person(server: Slapd, uid: str, password: str) -> None:
    """A person whose uid may hold anything (LDIF base64 values)."""
    rdn = uid.replace(",", "\\,")
    ldif = (
        f"dn:: {_b64(f'uid={rdn},{PEOPLE_DN}')}\nobjectClass: inetOrgPerson\n"
        f"uid:: {_b64(uid)}\ncn:: {_b64(uid)}\nsn:: {_b64(uid)}\n"
        f"userPassword: {ssha(password)}\n"
    )
    await asyncio.to_thread(server.ldapadd, ldif)


async def start_with_ldap(start_auth_server: StartAuth, server: Slapd) -> AuthServer:
    options = {
        "urls": server.url,
        "base_dn": PEOPLE_DN,
        "bind_dn": READER_DN,
        "bind_password": READER_PASSWORD,
        "connect_timeout": "2",
        "operation_timeout": "2",
    }
    return await start_auth_server(
        authenticators=("ldap",), authenticator_options={"ldap": options}
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bugless.auth" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("ann smith-{tag}", "holds ' ' (U+0020 SPACE)"),
        ("ann/smith-{tag}", "holds '/' (U+002F SOLIDUS)"),
        ("ann:smith-{tag}", "holds ':' (U+003A COLON)"),
        ("ann,smith-{tag}", "holds ',' (U+002C COMMA)"),
        (f"p{CYRILLIC_A}ul-{{tag}}", "mixes scripts (CYRILLIC, LATIN)"),
    ],
)
async def test_an_ldap_name_that_is_no_username_refuses_the_sign_in_and_writes_nothing(
    start_auth_server: StartAuth,
    slapd_server: Slapd,
    caplog: pytest.LogCaptureFixture,
    uid: str,
    problem: str,
) -> None:
    auth = await start_with_ldap(start_auth_server, slapd_server)
    uid = uid.format(tag=secrets.token_hex(3))
    await add_person(slapd_server, uid, "their-pw")

    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        error = await expect_status(auth.sign_in(uid, "their-pw"), Status.UNAUTHENTICATED)

    assert f"your username from ldap, {uid!r}, cannot be used in bugless" in (error.message or "")
    assert problem in (error.message or "")
    (logged,) = [w for w in warnings_of(caplog) if "LDAP attribute uid" in w]
    assert logged.startswith("ldap: LDAP attribute uid of ldap:")
    assert f"is {uid!r}, which " in logged
    assert problem in logged
    assert await auth.store.users_by_usernames([uid]) == []
    # The right password still matters: a wrong one is the usual refusal.
    wrong = await expect_status(auth.sign_in(uid, "wrong"), Status.UNAUTHENTICATED)
    assert "cannot be used" not in (wrong.message or "")


async def test_a_usable_ldap_name_of_another_script_signs_in(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    auth = await start_with_ldap(start_auth_server, slapd_server)
    uid = f"\u043f\u0430\u0432\u0435\u043b-{secrets.randbelow(10**6)}"  # all Cyrillic, digits
    await add_person(slapd_server, uid, "their-pw")

    result = await auth.sign_in(uid, "their-pw")

    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == uid


async def start_with_oidc(start_auth_server: StartAuth, provider: OidcProvider) -> AuthServer:
    options: dict[str, Any] = {
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    return await start_auth_server(
        authenticators=("oidc",), authenticator_options={"oidc": options}
    )


async def oidc_sign_in(auth: AuthServer, provider: OidcProvider, sub: str) -> Any:
    begun = await auth.stub.begin_oidc(v1.BeginOidcRequest(redirect_uri=REDIRECT_URI))
    callback = await provider.sign_in(begun.authorization_url, sub)
    return auth.stub.complete_oidc(
        v1.CompleteOidcRequest(
            flow_state=begun.flow_state,
            code=callback["code"],
            state=callback["state"],
            redirect_uri=REDIRECT_URI,
        )
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("@bob-{tag}", "starts with '@' (U+0040 COMMERCIAL AT)"),
        ("\uff42ob-{tag}", "a compatibility form of 'b'"),
        (f"b{CYRILLIC_A}b-{{tag}}", "mixes scripts (CYRILLIC, LATIN)"),
    ],
)
async def test_an_oidc_claim_that_is_no_username_refuses_the_sign_in_and_writes_nothing(
    start_auth_server: StartAuth,
    oidc_provider: OidcProvider,
    caplog: pytest.LogCaptureFixture,
    name: str,
    problem: str,
) -> None:
    auth = await start_with_oidc(start_auth_server, oidc_provider)
    name = name.format(tag=secrets.token_hex(3))
    sub = f"sub-{secrets.token_hex(4)}"
    # The next claim (email) would be usable: it is not tried instead.
    await oidc_provider.set_user(sub, {"preferred_username": name, "email": "bob@bugless.test"})

    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        error = await expect_status(
            await oidc_sign_in(auth, oidc_provider, sub), Status.UNAUTHENTICATED
        )

    assert f"your username from oidc, {name!r}, cannot be used in bugless" in (error.message or "")
    assert problem in (error.message or "")
    (logged,) = [w for w in warnings_of(caplog) if "OIDC claim" in w]
    assert logged.startswith(f"oidc: OIDC claim preferred_username of oidc:{oidc_provider.issuer}")
    assert f"is {name!r}, which " in logged
    assert problem in logged
    assert await auth.store.users_by_usernames([name, "bob@bugless.test"]) == []


async def test_an_oidc_name_a_local_user_holds_but_for_case_is_refused(
    start_auth_server: StartAuth, oidc_provider: OidcProvider
) -> None:
    # username_key folds case and normal form: "ÖLAF" from the provider is
    # the local "Ölaf" (decomposed here), another directory's: refused.
    auth = await start_with_oidc(start_auth_server, oidc_provider)
    tag = secrets.token_hex(3)
    local = await auth.add_user(f"O\u0308laf-{tag}")
    sub = f"sub-{secrets.token_hex(4)}"
    await oidc_provider.set_user(sub, {"preferred_username": f"\u00d6LAF-{tag.upper()}"})

    error = await expect_status(
        await oidc_sign_in(auth, oidc_provider, sub), Status.FAILED_PRECONDITION
    )

    assert "already belongs to another bugless user (from local)" in (error.message or "")
    (still,) = await auth.store.users_by_usernames([f"\u00f6laf-{tag}"])
    assert still.user_id == local.user_id


def test_a_certificate_mapping_with_an_unusable_username_is_refused_on_load() -> None:
    with pytest.raises(ValueError, match=r"'deploy': username 'deploy bot' holds ' '"):
        parse_mapping('{"deploy": {"username": "deploy bot"}}', origin="mapping.json")
    assert parse_mapping('{"deploy": {"username": "deploy-bot"}}', origin="m")["deploy"]
