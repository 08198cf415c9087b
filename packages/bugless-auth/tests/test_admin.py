"""CreateLocalUser, SetLocalPassword and SetUserDisabled, with permissions on the token."""

from __future__ import annotations

import unicodedata

from auth_support import PASSWORD, AuthServer, admin_token, new_user_token, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1


async def test_admin_creates_a_user_who_can_sign_in(auth: AuthServer) -> None:
    token = await admin_token(auth)
    name = unique("new")

    created = await auth.stub.create_local_user(
        v1.CreateLocalUserRequest(
            token=token, username=name, password="s3cret-pass", groups=["eng"], email="n@x.org"
        )
    )

    assert created.user_id.startswith("u_")
    assert created.display_name == name
    result = await auth.sign_in(name, "s3cret-pass")
    assert result.identity is not None
    assert result.identity.groups == ["eng"]


async def test_local_usernames_of_any_script_are_accepted_and_found_in_any_form(
    auth: AuthServer,
) -> None:
    """The local store takes the usernames' grammar (``bugless_core.usernames``), not ASCII only.

    So every local user can be ``@mentioned``: "Ölaf" and "t…josé" sign in,
    and a look-up by the decomposed, upper-case spelling finds Ölaf.
    """
    token = await admin_token(auth)
    olaf, jose = unique("Ölaf"), unique("t") + "josé"
    for name in (olaf, jose):
        created = await auth.stub.create_local_user(
            v1.CreateLocalUserRequest(token=token, username=name, password="s3cret-pass")
        )
        assert created.username == name
        assert (await auth.sign_in(name, "s3cret-pass")).identity is not None
    decomposed = unicodedata.normalize("NFD", olaf.upper())
    found = await auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[decomposed]))
    assert [u.username for u in found.users] == [olaf]
    for bad in ("Ölaf smith", "_ölaf", "ölaf\n", "ölaf.", "ölaf_"):
        refused = await expect_status(
            auth.stub.create_local_user(
                v1.CreateLocalUserRequest(token=token, username=bad, password="long-enough")
            ),
            Status.INVALID_ARGUMENT,
        )
        assert "letters and digits of any script" in (refused.message or ""), bad


async def test_creating_users_needs_manage_users(auth: AuthServer) -> None:
    token = await new_user_token(auth, unique("pleb"))
    request = v1.CreateLocalUserRequest(token=token, username=unique("x"), password="long-enough")

    await expect_status(auth.stub.create_local_user(request), Status.PERMISSION_DENIED)
    request.token = ""
    await expect_status(auth.stub.create_local_user(request), Status.UNAUTHENTICATED)


async def test_bad_new_users_are_refused_with_reasons(auth: AuthServer) -> None:
    token = await admin_token(auth)
    taken = unique("taken")
    await auth.add_user(taken)

    short = await expect_status(
        auth.stub.create_local_user(
            v1.CreateLocalUserRequest(token=token, username=unique("s"), password="short")
        ),
        Status.INVALID_ARGUMENT,
    )
    duplicate = await expect_status(
        auth.stub.create_local_user(
            v1.CreateLocalUserRequest(token=token, username=taken.upper(), password="long-enough")
        ),
        Status.ALREADY_EXISTS,
    )
    bad_name = await expect_status(
        auth.stub.create_local_user(
            v1.CreateLocalUserRequest(token=token, username="no spaces", password="long-enough")
        ),
        Status.INVALID_ARGUMENT,
    )
    assert "at least 8" in (short.message or "")
    assert "taken" in (duplicate.message or "")
    assert "not a valid username" in (bad_name.message or "")


async def test_look_alike_local_names_are_refused_and_nothing_is_written(
    auth: AuthServer,
) -> None:
    # The directories' rule (bugless_core.usernames.username_problem) holds
    # for new local names too: before, only the grammar was checked, so an
    # administrator could create a name that passes for a colleague's.
    token = await admin_token(auth)
    tag = unique("t")
    refused = {
        f"p\u0430ul-{tag}": "mixes scripts (CYRILLIC, LATIN)",  # Cyrillic "a"
        f"\uff41dmin-{tag}": "a compatibility form of 'a'",  # fullwidth "a"
        f"\ufb01nn-{tag}": "a compatibility form of 'fi'",  # the "fi" ligature
    }
    for name, problem in refused.items():
        error = await expect_status(
            auth.stub.create_local_user(
                v1.CreateLocalUserRequest(token=token, username=name, password="long-enough")
            ),
            Status.INVALID_ARGUMENT,
        )
        assert f"username: {name!r} cannot be a username: it " in (error.message or "")
        assert problem in (error.message or "")
        plain = unicodedata.normalize("NFKC", name)
        assert await auth.store.users_by_usernames([name, plain]) == []


async def test_a_look_alike_local_name_an_earlier_release_created_keeps_working(
    auth: AuthServer,
) -> None:
    # Only new names are checked: an account created before the rule (here
    # written straight to the store, as the old check let it) signs in and
    # changes its password as before.
    name = f"p\u0430ul-{unique('t')}"
    await auth.store.create_local_user(
        username=name,
        display_name="",
        email="",
        groups=[],
        password_hash=await auth.service.hashes.hash(PASSWORD),
    )

    token = (await auth.sign_in(name)).token
    await auth.stub.set_local_password(
        v1.SetLocalPasswordRequest(token=token, username=name, password="brand-new-pass")
    )

    result = await auth.sign_in(name, "brand-new-pass")
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == name


async def test_users_change_their_own_password_but_not_others(auth: AuthServer) -> None:
    me, other = unique("me"), unique("other")
    token = await new_user_token(auth, me)
    await auth.add_user(other)

    await auth.stub.set_local_password(
        v1.SetLocalPasswordRequest(token=token, username=me, password="brand-new-pass")
    )
    await expect_status(auth.sign_in(me, PASSWORD), Status.UNAUTHENTICATED)
    assert (await auth.sign_in(me, "brand-new-pass")).token
    await expect_status(
        auth.stub.set_local_password(
            v1.SetLocalPasswordRequest(token=token, username=other, password="hijacked-pass")
        ),
        Status.PERMISSION_DENIED,
    )


async def test_disabling_a_user_revokes_their_tokens_at_once(auth: AuthServer) -> None:
    admin = await admin_token(auth)
    name = unique("leaver")
    token = await new_user_token(auth, name)

    disabled = await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin, username=name, disabled=True)
    )

    assert disabled.disabled
    await expect_status(
        auth.stub.validate_token(v1.ValidateTokenRequest(token=token)), Status.UNAUTHENTICATED
    )
    await expect_status(auth.sign_in(name), Status.UNAUTHENTICATED)
    await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin, username=name, disabled=False)
    )
    assert (await auth.sign_in(name)).token
    await expect_status(
        auth.stub.set_user_disabled(
            v1.SetUserDisabledRequest(token=admin, username="nobody-at-all", disabled=True)
        ),
        Status.NOT_FOUND,
    )
