"""MatchImportUsers and MergePlaceholder: an imported tracker's people (issue 21)."""

from __future__ import annotations

from auth_support import AuthServer, UserCommands, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.policy import Policy
from bugless_core.auth_backend import ExternalIdentity
from bugless_proto import v1


async def _token(auth: AuthServer, *groups: str) -> str:
    name = unique("imp")
    await auth.add_user(name, groups=list(groups))
    return (await auth.sign_in(name)).token


def _request(
    token: str, *people: v1.SourcePerson, create: bool = True
) -> v1.MatchImportUsersRequest:
    return v1.MatchImportUsersRequest(
        token=token, source="trac", people=list(people), create_placeholders=create
    )


async def test_people_match_by_email_then_username_and_the_rest_get_placeholders(
    auth: AuthServer,
) -> None:
    token = await _token(auth, "admins")
    by_mail = unique("mail")
    by_name = unique("name")
    await auth.add_user(by_mail, email=f"{by_mail}@example.org")
    await auth.add_user(by_name)
    stranger = unique("gone")
    people = [
        v1.SourcePerson(key="k1", username="other-login", email=f"{by_mail.upper()}@example.org"),
        v1.SourcePerson(key="k2", username=by_name),
        v1.SourcePerson(key=stranger, username=stranger, display_name="Gone Person"),
    ]
    answer = await auth.stub.match_import_users(_request(token, *people))
    assert [m.matched_by for m in answer.matches] == ["email", "username", "placeholder"]
    users = [m.user for m in answer.matches]
    assert users[0] is not None
    assert users[0].username == by_mail
    assert users[1] is not None
    assert users[1].username == by_name
    placeholder = users[2]
    assert placeholder is not None
    assert placeholder.placeholder
    assert placeholder.username == f"{stranger}@trac"
    assert placeholder.display_name == "Gone Person"

    again = await auth.stub.match_import_users(_request(token, *people))
    assert again.matches[2].user is not None
    assert again.matches[2].user.user_id == placeholder.user_id, "a re-run finds the same one"

    await expect_status(auth.sign_in(placeholder.username, ""), Status.UNAUTHENTICATED)
    suggested = await auth.stub.suggest_users(v1.SuggestUsersRequest(prefix=stranger, limit=5))
    assert suggested.users == []


async def test_a_dry_run_creates_nothing(auth: AuthServer) -> None:
    token = await _token(auth, "admins")
    key = unique("dry")
    person = v1.SourcePerson(key=key, username=key)
    answer = await auth.stub.match_import_users(_request(token, person, create=False))
    assert answer.matches[0].matched_by == ""
    assert answer.matches[0].user is None
    looked = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[f"{key}@trac"]))
    assert looked.users == []


async def test_a_placeholder_name_drops_accents(auth: AuthServer) -> None:
    token = await _token(auth, "admins")
    key = unique("jurgen")
    person = v1.SourcePerson(key=key, username=key.replace("jurgen", "jürgen"))
    answer = await auth.stub.match_import_users(_request(token, person))
    assert answer.matches[0].user is not None
    assert answer.matches[0].user.username == f"{key}@trac", "not j-rgen…@trac"


async def test_matching_needs_the_import_permission(auth: AuthServer) -> None:
    token = await _token(auth)
    person = v1.SourcePerson(key="x", username="x")
    await expect_status(
        auth.stub.match_import_users(_request(token, person)), Status.PERMISSION_DENIED
    )


def test_admin_does_not_imply_the_import_permission() -> None:
    policy = Policy({"admins": ["admin"], "importers": ["admin", "import_issues"]})
    assert not policy.decide(["admins"], "import_issues").allowed
    assert "import_issues" not in policy.permissions(["admins"])
    assert policy.decide(["importers"], "import_issues").allowed
    assert "import_issues" in Policy().permissions(["admins"])


async def test_a_merged_placeholder_answers_as_the_real_account(auth: AuthServer) -> None:
    token = await _token(auth, "admins")
    real = unique("real")
    await auth.add_user(real, display_name="Real Person")
    key = unique("old")
    answer = await auth.stub.match_import_users(
        _request(token, v1.SourcePerson(key=key, username=key))
    )
    placeholder = answer.matches[0].user
    assert placeholder is not None
    merged = await auth.stub.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=real)
    )
    assert merged.user_id == placeholder.user_id
    assert merged.username == real
    got = await auth.stub.get_users(v1.GetUsersRequest(user_ids=[placeholder.user_id]))
    assert [(u.user_id, u.username, u.display_name) for u in got.users] == [
        (placeholder.user_id, real, "Real Person")
    ]
    looked = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[real]))
    assert looked.users[0].user_id != placeholder.user_id, "the real name keeps its own id"
    assert list(looked.users[0].merged_user_ids) == [placeholder.user_id], "search matches both"


async def test_an_administrator_merges_a_placeholder_from_the_command_line(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    """``bugless auth user merge``: the import README's promise, without a gRPC client.

    Before, MergePlaceholder had no caller in bugless: an administrator whose
    imported ``cyd@trac`` joined as ``cyd`` had no command and no page to
    merge them (walk26).
    """
    token = await _token(auth, "admins")
    real = unique("cyd")
    await auth.add_user(real, display_name="Cyd Lee")
    key = unique("cydold")
    answer = await auth.stub.match_import_users(
        _request(token, v1.SourcePerson(key=key, username=key))
    )
    placeholder = answer.matches[0].user
    assert placeholder is not None

    out, _ = await user_commands("merge", placeholder.username, real)

    assert out.strip() == f"merged the placeholder {placeholder.username} into {real}"
    looked = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[real]))
    assert list(looked.users[0].merged_user_ids) == [placeholder.user_id]
    _, err = await user_commands("merge", real, placeholder.username, status=1)
    assert f"PLACEHOLDER: {real!r} is a real account; only placeholders are merged" in err
    _, err = await user_commands("merge", unique("nobody"), real, status=3)
    assert "PLACEHOLDER: no bugless user is called" in err


async def test_merging_refuses_real_accounts_and_needs_manage_users(auth: AuthServer) -> None:
    admin = await _token(auth, "admins")
    one, two = unique("one"), unique("two")
    await auth.add_user(one)
    await auth.add_user(two)
    await expect_status(
        auth.stub.merge_placeholder(
            v1.MergePlaceholderRequest(token=admin, placeholder=one, into=two)
        ),
        Status.FAILED_PRECONDITION,
    )
    plain = await _token(auth)
    await expect_status(
        auth.stub.merge_placeholder(
            v1.MergePlaceholderRequest(token=plain, placeholder=one, into=two)
        ),
        Status.PERMISSION_DENIED,
    )


async def test_a_placeholder_is_not_merged_into_a_bot(auth: AuthServer) -> None:
    """An imported person's past belongs to a person: a bot account as INTO is refused.

    Merged, what cyd@trac did would show as the bot's on every page and
    ``reporter:BOT`` would find it; nothing was written.
    """
    token = await _token(auth, "admins")
    bot = unique("ci")
    await auth.store.resolve(ExternalIdentity(subject=f"tls:{bot}", username=bot, bot=True), "tls")
    key = unique("old")
    answer = await auth.stub.match_import_users(
        _request(token, v1.SourcePerson(key=key, username=key))
    )
    placeholder = answer.matches[0].user
    assert placeholder is not None

    refused = await expect_status(
        auth.stub.merge_placeholder(
            v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=bot)
        ),
        Status.FAILED_PRECONDITION,
    )
    assert refused.message == f"into: {bot!r} is a bot; merge into a person's account"
    looked = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[bot]))
    assert list(looked.users[0].merged_user_ids) == [], "nothing merged"
    got = await auth.stub.get_users(v1.GetUsersRequest(user_ids=[placeholder.user_id]))
    assert got.users[0].placeholder, "still an unmerged placeholder"
