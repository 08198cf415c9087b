"""A tls mapping entry names a bugless user: two entries with one username are one user.

A bot's certificate rotation adds a ``sha256:`` entry for the new certificate
beside the old one's, with the same username. The second subject used to mint
a second user that took the name (the first renamed to ``name~id``), leaving
the bot's issues, grants and groups with the old id, and the two certificates
took the name from each other at every sign-in. Real Authenticator over gRPC
on PostgreSQL, trustme certificates, a mapping file edited while it serves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from auth_support import AuthServer, StartAuth, unique
from certificates import Pki, make_pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from grpc_errors import expect_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_auth.tls import TlsAuthenticator
from bugless_core.auth_backend import ExternalIdentity
from bugless_core.errors import FailedPrecondition, from_grpc_error
from bugless_proto import v1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Mapping:
    """A mapping file the test edits, and an Authenticator reading it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, object]] = {}

    def set(self, key: str, username: str, *, bot: bool = True) -> None:
        self.set_all([key], username, bot=bot)

    def set_all(self, keys: list[str], username: str, *, bot: bool = True) -> None:
        """Give every entry of ``keys`` ``username``, in one edit of the file."""
        for key in keys:
            self.entries[key] = {"username": username, "groups": ["bots"], "bot": bot}
        self.path.write_text(json.dumps(self.entries, indent=1))


@pytest.fixture
async def mapped(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path
) -> tuple[AuthServer, Mapping]:
    mapping = Mapping(tmp_path / "certificates.json")
    mapping.set("placeholder-bot", unique("placeholder"))
    server = await start_auth_server(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {
                "mapping_file": str(mapping.path),
                "ca_file": str(pki.ca_file),
                "reload_check_seconds": "0",
            }
        },
    )
    return server, mapping


def fingerprint(der: bytes) -> str:
    return "sha256:" + x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()


async def signed_in(server: AuthServer, der: bytes) -> v1.User:
    result = await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )
    assert result.identity is not None
    assert result.identity.user is not None
    return result.identity.user


async def users_named(server: AuthServer, prefix: str) -> dict[str, str]:
    """Username to user id of every user whose username starts with ``prefix``."""
    rows = await server.store.run(
        lambda conn: conn.fetch(
            "SELECT username, user_id FROM users WHERE username LIKE $1", prefix + "%"
        ),
        transaction=False,
    )
    return {r["username"]: r["user_id"] for r in rows}


async def test_a_second_entry_for_a_bots_new_certificate_signs_in_as_the_same_user(
    mapped: tuple[AuthServer, Mapping], pki: Pki
) -> None:
    """The rotation: old certificate by fingerprint, the new one by another; one user,
    whichever signs in, and neither takes the name from the other."""
    server, mapping = mapped
    bot = unique("release-bot")
    old_der, new_der = pki.client(bot), pki.client(bot)
    mapping.set(fingerprint(old_der), bot)
    before = await signed_in(server, old_der)

    mapping.set(fingerprint(new_der), bot)
    after = await signed_in(server, new_der)
    again = await signed_in(server, old_der)

    assert after.user_id == before.user_id == again.user_id
    assert after.username == again.username == bot
    assert await users_named(server, bot) == {bot: before.user_id}
    subjects = await server.store.subjects_of("tls")
    assert sorted(s for s, user in subjects if user == before.user_id) == sorted(
        f"tls:{fingerprint(d)}" for d in (old_der, new_der)
    )


async def test_an_entry_changed_to_another_mapped_username_moves_to_that_user(
    mapped: tuple[AuthServer, Mapping], pki: Pki
) -> None:
    """An entry now naming another mapped bot's username signs in as that bot; the
    user it left keeps its name (no ``name~id``) and its certificate session ends."""
    server, mapping = mapped
    first_cn, second_cn = unique("first-cn"), unique("second-cn")
    first_name, second_name = unique("first-bot"), unique("second-bot")
    mapping.set(first_cn, first_name)
    mapping.set(second_cn, second_name)
    first_der, second_der = pki.client(first_cn), pki.client(second_cn)
    first = await signed_in(server, first_der)
    second_result = await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=second_der)
    )
    assert second_result.identity is not None
    assert second_result.identity.user is not None
    second = second_result.identity.user

    mapping.set(second_cn, first_name)
    moved = await signed_in(server, second_der)
    assert moved.user_id == first.user_id
    assert (await signed_in(server, first_der)).user_id == first.user_id
    assert await users_named(server, first_name) == {first_name: first.user_id}
    assert await users_named(server, second_name) == {second_name: second.user_id}
    with pytest.raises(GRPCError) as ended:
        await server.stub.validate_token(v1.ValidateTokenRequest(token=second_result.token))
    assert ended.value.status is Status.UNAUTHENTICATED


async def test_an_entry_given_a_new_name_while_another_entry_names_its_user_is_refused(
    mapped: tuple[AuthServer, Mapping], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Two entries name one bot; one is given a username nobody holds, in an edit of its
    own. Renaming the bot would be undone by the other entry's next sign-in; a new user
    for it (11a7f2f2) left the bot with no entry once the other was given the new name
    too in a later edit (it joined the new user): the bot's issues, groups and grants
    stranded on a user nothing maps, and the new name held by one no command renames.
    The changed entry's certificate is now refused, saying which entry still names the
    bot and to give them all the new name, nothing written; the other signs in as
    before; once the later edit gives it the new name too, the bot is renamed (same id),
    both its certificates sign in as it, and no user is left without an entry."""
    server, mapping = mapped
    bot, new_name = unique("twin-bot"), unique("renamed-bot")
    moving_cn, staying_cn = unique("moving"), unique("staying")
    mapping.set_all([moving_cn, staying_cn], bot)
    moving_der, staying_der = pki.client(moving_cn), pki.client(staying_cn)
    before = await signed_in(server, moving_der)
    assert (await signed_in(server, staying_der)).user_id == before.user_id

    mapping.set(moving_cn, new_name)
    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        error = await expect_status(
            server.stub.authenticate_certificate(
                v1.AuthenticateCertificateRequest(certificate_der=moving_der)
            ),
            Status.UNAUTHENTICATED,
        )
    refusal = from_grpc_error(error)
    assert refusal.reason == "MAPPING_ENTRIES_DISAGREE"
    assert (
        f"is mapped to username {new_name!r}, but its user {bot!r} is still named by "
        f"tls:{staying_cn}: give every entry naming {bot!r} the new username"
    ) in refusal.message
    assert f"tls:{moving_cn} is mapped to username {new_name!r}" in caplog.text
    assert await users_named(server, new_name) == {}
    staying = await signed_in(server, staying_der)
    assert (staying.user_id, staying.username) == (before.user_id, bot)

    mapping.set(staying_cn, new_name)  # the later edit: every entry names the new name
    for der in (moving_der, staying_der, moving_der):
        after = await signed_in(server, der)
        assert (after.user_id, after.username) == (before.user_id, new_name)
    assert await users_named(server, bot) == {}
    assert await users_named(server, new_name) == {new_name: before.user_id}
    subjects = await server.store.subjects_of("tls")
    assert (f"tls:{moving_cn}", before.user_id) in subjects
    assert (f"tls:{staying_cn}", before.user_id) in subjects


async def test_every_entry_of_a_user_given_one_new_name_renames_the_user(
    mapped: tuple[AuthServer, Mapping], pki: Pki
) -> None:
    """Both entries of a bot given one new name in one edit: whichever signs in first
    renames the bot (its id, and with it its history, kept), and the other joins it."""
    server, mapping = mapped
    bot, new_name = unique("pair-bot"), unique("renamed-pair")
    first_cn, second_cn = unique("first"), unique("second")
    mapping.set_all([first_cn, second_cn], bot)
    before = await signed_in(server, pki.client(first_cn))
    await signed_in(server, pki.client(second_cn))

    mapping.set_all([first_cn, second_cn], new_name)
    for cn in (second_cn, first_cn, second_cn):
        after = await signed_in(server, pki.client(cn))
        assert (after.user_id, after.username) == (before.user_id, new_name)
    assert await users_named(server, bot) == {}


async def test_an_entry_naming_another_backends_user_is_refused_and_the_name_kept(
    mapped: tuple[AuthServer, Mapping], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A mapping entry never takes over a local (LDAP, OIDC) user's name or account:
    refused, saying why, logged for the operator, and nothing written."""
    server, mapping = mapped
    person = unique("carol")
    local = await server.add_user(person)
    cn = unique("imposter")
    mapping.set(cn, person)

    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        error = await expect_status(
            server.stub.authenticate_certificate(
                v1.AuthenticateCertificateRequest(certificate_der=pki.client(cn))
            ),
            Status.UNAUTHENTICATED,
        )

    assert from_grpc_error(error).reason == "USERNAME_TAKEN"
    assert f"username {person!r}" in (error.message or "")
    assert "another bugless user (from local)" in (error.message or "")
    assert await users_named(server, person) == {person: local.user_id}
    assert f"tls:{cn}" not in {s for s, _ in await server.store.subjects_of("tls")}
    assert f"tls:{cn} names username {person!r}" in caplog.text
    assert local.user_id in caplog.text
    assert (await server.sign_in(person)).identity is not None


async def test_entries_of_one_user_that_disagree_are_refused_at_start_and_while_serving(
    mapped: tuple[AuthServer, Mapping], pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each sign-in writes its entry's groups: two entries of one user with other groups
    would flip the user's groups (and end its sessions) at every sign-in. Such a mapping
    is refused when the Authenticator starts, and an edit to one while it serves is
    logged and the last good mapping kept."""
    bot = unique("split-bot")
    disagreeing = {
        "old-cert": {"username": bot, "groups": ["bots", "deployers"]},
        "new-cert": {"username": bot, "groups": ["bots"]},
    }
    path = tmp_path / "disagreeing.json"
    path.write_text(json.dumps(disagreeing))
    with pytest.raises(ValueError, match="differ in groups") as refused:
        await TlsAuthenticator.open({"mapping_file": str(path)})
    assert f"'old-cert' and 'new-cert' name one user ({bot!r})" in str(refused.value)

    server, mapping = mapped
    mapping.set("old-cert", bot)
    before = await signed_in(server, pki.client("old-cert"))
    mapping.entries["new-cert"] = {"username": bot, "groups": ["bots", "admins"]}
    mapping.path.write_text(json.dumps(mapping.entries))
    await expect_status(
        server.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=pki.client("new-cert"))
        ),
        Status.UNAUTHENTICATED,
    )
    assert "differ in groups" in caplog.text
    assert (await signed_in(server, pki.client("old-cert"))).user_id == before.user_id


async def test_a_user_its_entries_all_left_is_claimed_back_by_an_entry_with_its_username(
    mapped: tuple[AuthServer, Mapping], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A bot's only entry is changed to another mapped bot's username and moves there,
    leaving the bot mapped by nothing (its name, id, issues and groups kept). A later
    entry with the bot's username signs in as that bot again, claiming it back, rather
    than being refused as "held by another bugless user (from none)", which no command
    could fix. A directory's sign-in with that username is still refused, and told how
    the mapping takes the user back."""
    server, mapping = mapped
    left_name, other_name = unique("left-bot"), unique("other-bot")
    moving_cn, other_cn, returning_cn = unique("moving"), unique("other"), unique("returning")
    mapping.set(moving_cn, left_name)
    mapping.set(other_cn, other_name)
    left = await signed_in(server, pki.client(moving_cn))
    other = await signed_in(server, pki.client(other_cn))
    mapping.set(moving_cn, other_name)
    assert (await signed_in(server, pki.client(moving_cn))).user_id == other.user_id
    assert left.user_id not in {user for _, user in await server.store.subjects_of("tls")}

    directory = ExternalIdentity(
        subject=f"oidc:https://id.example#{unique('sub')}",
        username=left_name,
        username_from="OIDC claim preferred_username",
    )
    with pytest.raises(FailedPrecondition) as refused:
        await server.store.resolve(directory, "oidc")
    assert "(from a certificate mapping, which maps it no more)" in refused.value.message
    assert f"a tls mapping entry with username {left_name!r} takes that user back" in (
        refused.value.message
    )

    mapping.set(returning_cn, left_name)
    with caplog.at_level(logging.INFO, logger="bugless.auth"):
        back = await signed_in(server, pki.client(returning_cn))
    assert back.user_id == left.user_id
    assert back.username == left_name
    assert await users_named(server, left_name) == {left_name: left.user_id}
    assert f"tls:{returning_cn} claims back user {left.user_id}" in caplog.text
    assert (f"tls:{returning_cn}", left.user_id) in await server.store.subjects_of("tls")
    assert (await signed_in(server, pki.client(moving_cn))).user_id == other.user_id


async def test_a_person_its_entries_left_is_not_claimed_back_by_a_bots_entry(
    mapped: tuple[AuthServer, Mapping], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A person's certificate entry (bot = false) moved to another user by an edit leaves
    the person mapped by nothing. A new bot entry given that username (an operator reusing
    a name) is refused, saying why, and the person's account stays a person's: before, it
    claimed the account back, its issues and groups, as a bot. An entry with bot = false
    still takes the person back."""
    server, mapping = mapped
    person, other = unique("dana"), unique("other-bot")
    person_cn, other_cn, bot_cn = unique("dana-cert"), unique("other"), unique("new-bot")
    mapping.set(person_cn, person, bot=False)
    mapping.set(other_cn, other)
    dana = await signed_in(server, pki.client(person_cn))
    assert not dana.bot
    await signed_in(server, pki.client(other_cn))
    mapping.set(person_cn, other)
    await signed_in(server, pki.client(person_cn))

    mapping.set(bot_cn, person)
    with caplog.at_level(logging.WARNING, logger="bugless.auth"):
        error = await expect_status(
            server.stub.authenticate_certificate(
                v1.AuthenticateCertificateRequest(certificate_der=pki.client(bot_cn))
            ),
            Status.UNAUTHENTICATED,
        )
    assert from_grpc_error(error).reason == "USERNAME_TAKEN"
    assert "a person, and this entry is a bot; an entry with bot = false takes that user" in (
        error.message or ""
    )
    assert f"tls:{bot_cn} names username {person!r}, of user {dana.user_id}" in caplog.text
    assert f"tls:{bot_cn}" not in {s for s, _ in await server.store.subjects_of("tls")}
    rows = await server.store.run(
        lambda conn: conn.fetch("SELECT bot FROM users WHERE user_id = $1", dana.user_id),
        transaction=False,
    )
    assert [r["bot"] for r in rows] == [False]

    mapping.set(bot_cn, person, bot=False)
    back = await signed_in(server, pki.client(bot_cn))
    assert (back.user_id, back.bot) == (dana.user_id, False)
