"""The directory re-sync against a real slapd: identity changes take effect within the interval.

The Authenticator runs with ``ldap.resync_seconds=1`` over real gRPC; the
directory is changed through slapd (``ldapmodify``, a modrdn), and the test
waits (at most a few intervals) for what a frontend would see: the session
refused, the new name, the same opaque id (so nothing the Model keeps under
that id — issues, history, ACL entries — changes).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from auth_support import certificate_der, person_csr, terminate_the_waiter
from grpc_errors import expect_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from ldap_support import add_person, ldap_options, rename, start_with_ldap, who

from bugless_auth.ldap import LdapSettings
from bugless_auth.settings import PeopleCaSettings
from bugless_core.errors import Unavailable
from bugless_core.migrations import quote_schema
from bugless_proto import v1
from bugless_testing.polling import eventually
from bugless_testing.slapd import BASE_DN, GROUPS_DN, PEOPLE_DN, Slapd, ssha

if TYPE_CHECKING:
    from auth_support import AuthServer, StartAuth

#: Locked accounts carry employeeType=disabled; the filter leaves them out.
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))"


async def start(start_auth_server: StartAuth, server: Slapd, **extra: Any) -> AuthServer:
    options = ldap_options(server, user_filter=USER_FILTER, resync_seconds="1")
    return await start_auth_server(
        authenticators=("ldap",), authenticator_options={"ldap": options}, **extra
    )


async def add_group(server: Slapd, name: str, *uids: str) -> None:
    # groupOfNames needs a member even when the test removes its person: the base.
    members = "\n".join([f"member: {BASE_DN}", *(f"member: uid={uid},{PEOPLE_DN}" for uid in uids)])
    ldif = f"dn: cn={name},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {name}\n{members}\n"
    await asyncio.to_thread(server.ldapadd, ldif)


async def modify(server: Slapd, dn: str, change: str) -> None:
    await asyncio.to_thread(server.ldapmodify, f"dn: {dn}\nchangetype: modify\n{change}\n")


async def refused(auth: AuthServer, token: str) -> bool:
    try:
        await auth.stub.validate_token(v1.ValidateTokenRequest(token=token))
    except GRPCError as exc:
        if exc.status != Status.UNAUTHENTICATED:
            raise
        return True
    return False


async def user(auth: AuthServer, user_id: str) -> v1.User:
    (found,) = (await auth.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))).users
    return found


async def test_a_user_disabled_in_the_directory_is_signed_out_and_back_when_unlocked(
    start_auth_server: StartAuth, slapd_server: Slapd, people_ca_settings: PeopleCaSettings
) -> None:
    auth = await start(start_auth_server, slapd_server, people_ca=people_ca_settings)
    uid = f"leaver-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "leaver-pw")
    result = await auth.sign_in(uid, "leaver-pw")
    _, signed_in = who(result)
    assert not await refused(auth, result.token)
    # Their API access: a people-CA certificate, as `bugless login` gets one.
    issued = await auth.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=result.token, csr_pem=person_csr(), label="laptop")
    )
    api_call = v1.AuthenticateCertificateRequest(
        certificate_der=certificate_der(issued.certificate_pem)
    )
    assert (await auth.stub.authenticate_certificate(api_call)).identity is not None

    await modify(
        slapd_server, f"uid={uid},{PEOPLE_DN}", "add: employeeType\nemployeeType: disabled"
    )

    await eventually(
        lambda: refused(auth, result.token), "the session of a locked user ends", every=0.2
    )
    assert (await user(auth, signed_in.user_id)).disabled
    await expect_status(auth.sign_in(uid, "leaver-pw"), Status.UNAUTHENTICATED)
    await expect_status(auth.stub.authenticate_certificate(api_call), Status.UNAUTHENTICATED)

    await modify(slapd_server, f"uid={uid},{PEOPLE_DN}", "delete: employeeType")

    async def enabled() -> bool:
        return not (await user(auth, signed_in.user_id)).disabled

    await eventually(enabled, "an unlocked user is enabled again", every=0.2)
    again = await auth.sign_in(uid, "leaver-pw")
    assert who(again)[1].user_id == signed_in.user_id
    assert await refused(auth, result.token)  # the old session stays ended


async def test_a_deleted_entry_disables_the_user_but_an_administrators_disable_stays(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    auth = await start(start_auth_server, slapd_server)
    uid = f"gone-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "gone-pw")
    result = await auth.sign_in(uid, "gone-pw")
    user_id = who(result)[1].user_id

    await asyncio.to_thread(
        slapd_server.ldapmodify, f"dn: uid={uid},{PEOPLE_DN}\nchangetype: delete\n"
    )

    await eventually(
        lambda: refused(auth, result.token), "a deleted user's session ends", every=0.2
    )
    assert (await user(auth, user_id)).disabled


async def test_losing_a_group_the_policy_names_ends_the_sessions_and_other_groups_do_not(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    triage, chat = f"triage-{secrets.token_hex(3)}", f"chat-{secrets.token_hex(3)}"
    auth = await start(start_auth_server, slapd_server, policy={triage: ("create_hotlist",)})
    uid = f"mover-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "mover-pw")
    await add_group(slapd_server, triage, uid)
    await add_group(slapd_server, chat, uid)
    result = await auth.sign_in(uid, "mover-pw")
    identity, signed_in = who(result)
    assert {triage, chat} <= set(identity.groups)
    assert "create_hotlist" in identity.permissions

    # A group the policy does not name: the groups change, the session stays.
    await modify(
        slapd_server, f"cn={chat},{GROUPS_DN}", f"delete: member\nmember: uid={uid},{PEOPLE_DN}"
    )

    async def chat_gone() -> bool:
        answer = await auth.stub.validate_token(v1.ValidateTokenRequest(token=result.token))
        return chat not in answer.groups

    await eventually(chat_gone, "a group removal shows in the identity", every=0.2)

    await modify(
        slapd_server, f"cn={triage},{GROUPS_DN}", f"delete: member\nmember: uid={uid},{PEOPLE_DN}"
    )

    await eventually(
        lambda: refused(auth, result.token), "losing a permission's group signs out", every=0.2
    )
    again = await auth.sign_in(uid, "mover-pw")
    assert who(again)[1].user_id == signed_in.user_id
    assert "create_hotlist" not in who(again)[0].permissions


#: A user's groups and live sessions as the database has them (committed).
GROUPS_AND_LIVE_SESSIONS = """
SELECT u.groups, (SELECT count(*) FROM sessions s WHERE s.user_id = u.user_id
                   AND s.revoked_at IS NULL AND s.expires_at > now()) AS live
  FROM users u WHERE u.user_id = $1
"""


async def groups_and_sessions(connection: asyncpg.Connection, user_id: str) -> tuple[set[str], int]:
    row = await connection.fetchrow(GROUPS_AND_LIVE_SESSIONS, user_id)
    assert row is not None
    return set(row["groups"]), int(row["live"])


async def test_a_round_that_dies_after_a_group_loss_leaves_the_group_and_the_sessions_both(
    start_auth_server: StartAuth, slapd_server: Slapd, people_ca_settings: PeopleCaSettings
) -> None:
    """The refreshed record and the end of the sessions commit together, or neither does.

    The round's end of the sessions waits on the test's lock of ``sessions``;
    its backend is then terminated, as a crash or a lost connection would end
    it. Before, the refresh had committed on its own: the record said the
    group was gone while the sessions signed in with it lived on, and no
    later round ended them (it compares the directory with that record).
    The people-CA certificate is not revoked: it names the person, and a
    sign-in with it reads the refreshed groups.
    """
    triage = f"triage-{secrets.token_hex(3)}"
    auth = await start(
        start_auth_server,
        slapd_server,
        policy={triage: ("create_hotlist",)},
        people_ca=people_ca_settings,
    )
    uid = f"mover-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "mover-pw")
    await add_group(slapd_server, triage, uid)
    result = await auth.sign_in(uid, "mover-pw")
    user_id = who(result)[1].user_id
    await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=user_id))
    issued = await auth.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=result.token, csr_pem=person_csr(), label="laptop")
    )
    api_call = v1.AuthenticateCertificateRequest(
        certificate_der=certificate_der(issued.certificate_pem)
    )
    connection = await asyncpg.connect(
        auth.settings.database_url,
        server_settings={"search_path": quote_schema(auth.settings.schema)},
    )
    try:
        before = await groups_and_sessions(connection, user_id)
        assert triage in before[0]
        assert before[1] == 2  # the sign-in's and the assertion's
        async with connection.transaction():
            await connection.execute("LOCK TABLE sessions IN SHARE MODE")
            await modify(
                slapd_server,
                f"cn={triage},{GROUPS_DN}",
                f"delete: member\nmember: uid={uid},{PEOPLE_DN}",
            )
            await terminate_the_waiter(
                connection, "the round's end of the sessions waits on the test's lock"
            )
            assert await groups_and_sessions(connection, user_id) == before, (
                "a half-done group loss"
            )
            assert not await refused(auth, result.token)
        # Unhindered, a later round does it whole.
        await eventually(
            lambda: refused(auth, result.token), "losing the group signs out", every=0.2
        )
        assert await groups_and_sessions(connection, user_id) == (before[0] - {triage}, 0)
    finally:
        await connection.close()
    signed_in = (await auth.stub.authenticate_certificate(api_call)).identity
    assert signed_in is not None
    assert triage not in signed_in.groups
    assert "create_hotlist" not in signed_in.permissions


async def test_a_sign_in_that_brings_the_loss_of_a_policy_group_ends_the_other_sessions(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    """No re-sync (``resync_seconds=0``): the user's next sign-in brings the new groups.

    Before, it refreshed the record and ended nothing, and a re-sync after it
    found nothing lost (it compares the directory with that record): the
    sessions signed in with the group, and their assertions, lived on.
    Losing a group the policy does not name ends nothing; the new session
    lives.
    """
    triage, chat = f"triage-{secrets.token_hex(3)}", f"chat-{secrets.token_hex(3)}"
    options = ldap_options(slapd_server, user_filter=USER_FILTER, resync_seconds="0")
    auth = await start_auth_server(
        authenticators=("ldap",),
        authenticator_options={"ldap": options},
        policy={triage: ("create_hotlist",)},
    )
    uid = f"mover-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "mover-pw")
    await add_group(slapd_server, triage, uid)
    await add_group(slapd_server, chat, uid)
    first = await auth.sign_in(uid, "mover-pw")
    user_id = who(first)[1].user_id
    assertion = await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=user_id))
    assert triage in assertion.groups

    await modify(
        slapd_server, f"cn={chat},{GROUPS_DN}", f"delete: member\nmember: uid={uid},{PEOPLE_DN}"
    )
    second = await auth.sign_in(uid, "mover-pw")
    assert chat not in who(second)[0].groups
    assert not await refused(auth, first.token), "a group the policy does not name"

    await modify(
        slapd_server, f"cn={triage},{GROUPS_DN}", f"delete: member\nmember: uid={uid},{PEOPLE_DN}"
    )
    third = await auth.sign_in(uid, "mover-pw")
    assert "create_hotlist" not in who(third)[0].permissions
    assert await refused(auth, first.token)
    assert await refused(auth, second.token)
    assert not await refused(auth, third.token)
    keys = await auth.stub.get_verification_keys(v1.GetVerificationKeysRequest())
    assert set(keys.revoked_session_ids) >= {first_session(first), assertion_session(assertion)}


def first_session(result: v1.AuthenticationResult) -> str:
    """The session id a sign-in's identity assertion names."""
    assert result.identity is not None
    return assertion_session(result.identity)


def assertion_session(identity: v1.Identity) -> str:
    """The session id (``sid``) an identity's assertion names (its claims, base64url JSON)."""
    claims = identity.assertion.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sid"])


async def test_a_rename_in_the_directory_shows_without_a_sign_in_under_the_same_id(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    auth = await start(start_auth_server, slapd_server)
    uid = f"erin-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "erin-pw")
    result = await auth.sign_in(uid, "erin-pw")
    user_id = who(result)[1].user_id

    await rename(slapd_server, uid, f"{uid}-new")
    await modify(
        slapd_server, f"uid={uid}-new,{PEOPLE_DN}", "replace: displayName\ndisplayName: Erin New"
    )

    async def renamed() -> bool:
        found = await user(auth, user_id)
        return found.username == f"{uid}-new" and found.display_name == "Erin New"

    await eventually(renamed, "the new name shows under the same id", every=0.2)
    looked_up = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[f"{uid}-new"]))
    assert [u.user_id for u in looked_up.users] == [user_id]
    assert not await refused(auth, result.token)  # a rename ends nothing


async def test_a_rename_to_a_name_that_is_no_username_is_logged_and_changes_nothing(
    start_auth_server: StartAuth, slapd_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    # The re-sync maps identities through the store as a sign-in does, so the
    # username rule (bugless_auth.external_names) holds there too.
    auth = await start(start_auth_server, slapd_server)
    uid = f"fay-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "fay-pw")
    result = await auth.sign_in(uid, "fay-pw")
    user_id = who(result)[1].user_id

    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        await rename(slapd_server, uid, f"{uid} new")

        async def logged() -> bool:
            return any(
                f"{user_id} not refreshed: your username from ldap, '{uid} new'" in m
                and "holds ' ' (U+0020 SPACE)" in m
                for m in caplog.messages
            )

        await eventually(logged, "the re-sync's warning", every=0.2)
    assert any(
        "LDAP attribute uid of ldap:" in m and f"is '{uid} new'" in m for m in caplog.messages
    )
    found = await user(auth, user_id)
    assert found.username == uid
    assert not found.disabled
    assert not await refused(auth, result.token)


async def test_a_directory_outage_disables_nobody(
    start_auth_server: StartAuth, own_slapd: Slapd
) -> None:
    auth = await start(start_auth_server, own_slapd)
    result = await auth.sign_in("bob", "bob-pw")
    user_id = who(result)[1].user_id
    (resync,) = auth.service.resyncs
    await resync.stop()  # rounds are driven by the test from here
    own_slapd.kill()

    with pytest.raises(Unavailable):
        await resync.run_once()

    assert not (await user(auth, user_id)).disabled
    assert not await refused(auth, result.token)


async def test_one_replica_at_a_time_runs_the_rounds_and_a_stopped_one_hands_over(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    schema = f"auth_{secrets.token_hex(4)}"
    first = await start(start_auth_server, slapd_server, schema=schema)
    second = await start(start_auth_server, slapd_server, schema=schema)
    uid = f"shared-{secrets.token_hex(3)}"
    await add_person(slapd_server, uid, "shared-pw")
    user_id = who(await first.sign_in(uid, "shared-pw"))[1].user_id
    (one,) = first.service.resyncs
    (other,) = second.service.resyncs

    async def rounds_run() -> bool:
        return one.rounds + other.rounds >= 4

    await eventually(rounds_run, "four 1 s rounds between the two replicas", every=0.2)
    assert sorted([one.rounds, other.rounds])[0] == 0, "one replica ran every round"
    leader, follower = (one, other) if one.rounds else (other, one)
    # The leader stops (a replica shut down): it gives the lease back, and the
    # other replica's next round is its own, with what the directory says now.
    await leader.stop()
    await modify(slapd_server, f"uid={uid},{PEOPLE_DN}", "replace: displayName\ndisplayName: Moved")

    async def handed_over() -> bool:
        found = await user(second if follower is other else first, user_id)
        return follower.rounds > 0 and found.display_name == "Moved"

    await eventually(handed_over, "the other replica runs the rounds", every=0.2)


async def test_a_round_that_fails_unexpectedly_is_logged_counted_and_the_rounds_go_on(
    start_auth_server: StartAuth, slapd_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error nobody translated (the lease table gone) does not end the re-sync."""
    auth = await start(start_auth_server, slapd_server)
    (resync,) = auth.service.resyncs
    registry = auth.runner.metrics_registry
    labels = {"loop": "auth.directory_resync:ldap"}

    def failures() -> float:
        return registry.get_sample_value("bugless_background_failures_total", labels) or 0.0

    async def a_round_ran() -> bool:
        return resync.rounds > 0

    await eventually(a_round_ran, "a first round", every=0.2)
    leases = f"{quote_schema(auth.settings.schema)}.bugless_leases"
    with caplog.at_level(logging.ERROR, logger="bugless.supervision"):
        await auth.store.run(lambda conn: conn.execute(f"ALTER TABLE {leases} RENAME TO gone"))

        async def failed() -> bool:
            return failures() >= 1

        await eventually(failed, "a round fails on the missing table", every=0.2)
        await auth.store.run(
            lambda conn: conn.execute(
                f"ALTER TABLE {quote_schema(auth.settings.schema)}.gone RENAME TO bugless_leases"
            )
        )
        rounds = resync.rounds

        async def next_round_ran() -> bool:
            return resync.rounds > rounds

        await eventually(next_round_ran, "the rounds go on once the table is back", every=0.2)

    logged = [r for r in caplog.records if r.name == "bugless.supervision"]
    assert len(logged) == failures()  # each failure logged once
    assert all(r.exc_info is not None for r in logged)
    assert "UndefinedTable" in repr(logged[0].exc_info)
    assert registry.get_sample_value("bugless_background_consecutive_failures", labels) == 0


async def test_a_user_filter_matching_the_username_by_a_rule_signs_in_and_re_syncs(
    start_auth_server: StartAuth, slapd_server: Slapd
) -> None:
    """``{username}`` as an extensible match's value: a round searches ``(uid=*)`` there.

    With ``*`` for ``{username}`` the round's search would be
    ``(uid:caseExactMatch:=*)``, no filter; the service refused to start.
    """
    exact = (
        "(&(objectClass=inetOrgPerson)(uid:caseExactMatch:={username})(!(employeeType=disabled)))"
    )
    options = ldap_options(slapd_server, user_filter=exact, resync_seconds="1")
    auth = await start_with_ldap(start_auth_server, options)
    (resync,) = auth.service.resyncs
    await resync.stop()  # rounds are driven by the test from here
    tag = secrets.token_hex(3)
    staying, leaving = f"exact-{tag}", f"exact-leaver-{tag}"
    for uid in (staying, leaving):
        await add_person(slapd_server, uid, f"{uid}-pw")
    stays = await auth.sign_in(staying, f"{staying}-pw")
    leaves = await auth.sign_in(leaving, f"{leaving}-pw")
    await modify(
        slapd_server, f"uid={leaving},{PEOPLE_DN}", "add: employeeType\nemployeeType: disabled"
    )

    await resync.run_once()

    assert (await user(auth, who(leaves)[1].user_id)).disabled
    assert await refused(auth, leaves.token)
    assert not (await user(auth, who(stays)[1].user_id)).disabled
    assert not await refused(auth, stays.token)


async def test_a_directory_listing_nobody_for_the_every_user_filter_disables_nobody(
    start_auth_server: StartAuth, slapd_server: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    """``(homeDirectory=/home/{username})`` signs in; its every-user form matches no entry.

    homeDirectory has an equality rule and no substring rule (nis.schema),
    so the re-sync's ``(homeDirectory=/home/*)`` is Undefined for every
    entry and slapd lists nobody. The round is refused (Unavailable, an
    error naming the filter), not taken as every user gone: before, each of
    the three users (a batch too small for the half-vanished guard) was
    disabled and signed out.
    """
    home = "(&(objectClass=inetOrgPerson)(homeDirectory=/home/{username}))"
    options = ldap_options(slapd_server, user_filter=home, resync_seconds="1")
    auth = await start_with_ldap(start_auth_server, options)
    (resync,) = auth.service.resyncs
    await resync.stop()  # rounds are driven by the test from here
    signed_in = []
    for n in range(3):
        uid = f"home-{n}-{secrets.token_hex(3)}"
        ldif = (
            f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {uid}\ncn: {uid}\nsn: {uid}\nuidNumber: {5000 + n}\ngidNumber: 5000\n"
            f"homeDirectory: /home/{uid}\nuserPassword: {ssha(f'{uid}-pw')}\n"
        )
        await asyncio.to_thread(slapd_server.ldapadd, ldif)
        signed_in.append(await auth.sign_in(uid, f"{uid}-pw"))

    with (
        caplog.at_level(logging.ERROR, logger="bugless_auth.ldap"),
        pytest.raises(Unavailable, match=r"lists no entry under .*disables nobody"),
    ):
        await resync.run_once()

    for result in signed_in:
        assert not (await user(auth, who(result)[1].user_id)).disabled
        assert not await refused(auth, result.token)
    (said,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "bugless_auth.ldap" and r.levelno == logging.ERROR
    ]
    assert said.startswith(
        "ldap re-sync: user_filter for every username, "
        "(&(objectClass=inetOrgPerson)(homeDirectory=/home/*)), lists no entry under "
        f"{PEOPLE_DN}, so the 3 known users asked for would all be disabled; refused"
    ), said
    assert "(homeDirectory=/home/*) is a substring test there" in said


def test_the_interval_is_an_ldap_setting_defaulting_to_five_minutes() -> None:
    settings = LdapSettings.from_mapping({"urls": "ldap://x", "base_dn": "dc=x"})
    assert settings.resync_seconds == 300.0
    off = LdapSettings.from_mapping({"urls": "ldap://x", "base_dn": "dc=x", "resync_seconds": "0"})
    assert off.resync_seconds == 0
