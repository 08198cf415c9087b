"""A new local username that looks like a user's (UTS #39 skeletons) is refused, naming them.

Over a real Authenticator's CreateLocalUser (what the web's admin form and
``bugless auth user add`` write through) and ``bugless auth user rename`` as a
subprocess on its schema; the skeletons from Unicode's own confusables.txt,
shipped with the package.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
from auth_support import AuthServer, UserCommands, unique
from grpc_errors import expect_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_auth.confusable_names import (
    _prototypes,
    confusable_holder,
    refuse_confusable,
    skeleton,
    uts39_skeleton,
)
from bugless_auth.store import IdentityStore
from bugless_core.errors import from_grpc_error
from bugless_core.migrations import quote_schema
from bugless_proto import v1

#: "ace" in Cyrillic letters: one script, so check_username alone lets it in.
CYRILLIC_ACE = "\u0430\u0441\u0435"


def test_the_skeletons_are_unicodes() -> None:
    """The table is Unicode's whole confusables.txt, the skeleton UTS #39's, and
    looking alike is what collides, not merely sharing letters."""
    prototypes = _prototypes()
    assert len(prototypes) == 6565  # "# total: 6565" in the shipped file's footer
    assert prototypes["\u0430"] == "a"
    assert prototypes["1"] == "l"
    # UTS #39's own example: "paypal" with a Cyrillic er (U+0440) is "paypal".
    assert uts39_skeleton("\u0440aypal") == uts39_skeleton("paypal") == "paypal"
    assert uts39_skeleton("\u00e9") == "e\u0301"  # NFD first: an accented letter is kept
    assert skeleton(CYRILLIC_ACE) == skeleton("ace")
    assert skeleton("Bill") == skeleton("bi11")
    assert skeleton("kim") == skeleton("kirn")
    assert skeleton("user0") == skeleton("usero")
    assert skeleton("ann") != skeleton("anna")


async def test_a_name_that_looks_like_a_users_is_not_created(auth: AuthServer) -> None:
    tag = str(secrets.randbelow(10**9))  # digits: of no script, so the names mix none
    holder = f"ace-{tag}"
    await auth.add_user(holder)
    admin = unique("admin")
    await auth.add_user(admin, groups=["admins"])
    token = (await auth.sign_in(admin)).token
    lookalike = f"{CYRILLIC_ACE}-{tag}"

    refused = await expect_status(
        auth.stub.create_local_user(
            v1.CreateLocalUserRequest(token=token, username=lookalike, password="long enough pw")
        ),
        Status.ALREADY_EXISTS,
    )

    assert from_grpc_error(refused).reason == "USERNAME_CONFUSABLE"
    assert refused.message == (
        f"username: {lookalike!r} looks like the username {holder!r} of another bugless user "
        "(the same letters to a reader, by Unicode's confusables: UTS #39), so it could "
        "pass for them; choose a name that does not"
    )
    assert await auth.store.users_by_usernames([lookalike]) == []
    made = await auth.stub.create_local_user(
        v1.CreateLocalUserRequest(token=token, username=f"ace2-{tag}", password="long enough pw")
    )
    assert made.username == f"ace2-{tag}"


async def test_a_name_that_looks_like_a_users_as_spelt_is_not_created(auth: AuthServer) -> None:
    """Pages show a name as spelt, not by its key: capital i's ("BiII") read as
    the l's of "Bill" and "Ian" as "lan", though the keys ("biii", "ian") look
    like neither."""
    tag = str(secrets.randbelow(10**9))
    admin = unique("admin")
    await auth.add_user(admin, groups=["admins"])
    token = (await auth.sign_in(admin)).token
    for holder, lookalike in [(f"Bill-{tag}", f"BiII-{tag}"), (f"lan-{tag}", f"Ian-{tag}")]:
        await auth.add_user(holder)

        refused = await expect_status(
            auth.stub.create_local_user(
                v1.CreateLocalUserRequest(
                    token=token, username=lookalike, password="long enough pw"
                )
            ),
            Status.ALREADY_EXISTS,
        )

        assert from_grpc_error(refused).reason == "USERNAME_CONFUSABLE"
        assert f"{lookalike!r} looks like the username {holder!r}" in (refused.message or "")
        assert await auth.store.users_by_usernames([lookalike]) == []
    # A name whose key is a look-alike's, spelt so that it does not look like it, is no one's.
    made = await auth.stub.create_local_user(
        v1.CreateLocalUserRequest(token=token, username=f"ian-{tag}", password="long enough pw")
    )
    assert made.username == f"ian-{tag}"


#: How many backends wait for a lock now (the two creates, once both are held up).
WAITING = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"


async def test_two_look_alike_names_created_at_the_same_moment_are_not_both_made(
    auth: AuthServer,
) -> None:
    """Two administrators create "ace" and Cyrillic "ace" at once. Each check used to
    read the users before the other's insert committed, and both names were made.
    Both creates are held up at their last statement (the users' change feed, whose
    head row the test holds) until both are under way: one is made, the other is
    refused as USERNAME_CONFUSABLE naming it. On PostgreSQL the second check waits
    for the first's transaction; on the SERIALIZABLE dialect (test_cockroach_dialect
    runs this again) the second transaction is aborted, re-run, and then refused."""
    tag = str(secrets.randbelow(10**9))
    admin = unique("admin")
    await auth.add_user(admin, groups=["admins"])
    token = (await auth.sign_in(admin)).token
    names = [f"ace-{tag}", f"{CYRILLIC_ACE}-{tag}"]
    holder = await asyncpg.connect(
        auth.settings.database_url,
        server_settings={"search_path": quote_schema(auth.settings.schema)},
    )
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT version FROM user_changes_state WHERE name = 'head' FOR UPDATE"
            )
            creates = [
                asyncio.ensure_future(
                    auth.stub.create_local_user(
                        v1.CreateLocalUserRequest(
                            token=token, username=name, password="long enough pw"
                        )
                    )
                )
                for name in names
            ]
            deadline = time.monotonic() + 20
            while await holder.fetchval(WAITING) < 2:
                assert time.monotonic() < deadline, "the two creates were not both held up"
                await asyncio.sleep(0.05)
        results = await asyncio.gather(*creates, return_exceptions=True)
    finally:
        await holder.close()
    refused = [r for r in results if isinstance(r, GRPCError)]
    assert len(refused) == 1, results
    assert refused[0].status is Status.ALREADY_EXISTS
    assert from_grpc_error(refused[0]).reason == "USERNAME_CONFUSABLE"
    made = [r.username for r in results if isinstance(r, v1.User)]
    assert len(made) == 1, results
    assert f"looks like the username {made[0]!r}" in (refused[0].message or "")
    assert [u.username for u in await auth.store.users_by_usernames(names)] == made


async def test_a_rename_to_a_name_that_looks_like_a_users_exits_as_a_name_taken(
    auth: AuthServer, user_commands: UserCommands
) -> None:
    tag = str(secrets.randbelow(10**9))
    bill, other = f"bill-{tag}", f"ted-{tag}"
    await auth.add_user(bill)
    await auth.add_user(other)
    _, err = await user_commands("rename", other, f"bi11-{tag}", status=4)
    assert f"NEW: 'bi11-{tag}' looks like the username {bill!r} of another bugless user" in err
    # Its own name's look-alike is no one else's: a rename to it goes through.
    out, _ = await user_commands("rename", bill, f"Bi11-{tag}")
    assert f"username: Bi11-{tag}" in out.splitlines()


#: Users of the directory the loop test checks a name against: enough that
#: their skeletons take a good fraction of a second to compute.
MANY_USERS = 60_000


async def test_the_check_leaves_the_event_loop_free(auth_database: str) -> None:
    """Computing every user's skeleton (a few microseconds a name) is not the
    event loop's work: inside the Authenticator (CreateLocalUser) the loop
    also answers sign-ins and the frontends' look-ups, within a latency
    bound, and on a large directory the computation held it for most of a
    second. Measured in CPU time of the loop's thread (what a loaded machine
    does not change): the check costs it about what reading the names does,
    not the skeletons too."""
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(auth_database, schema, dialect="postgres")
    store = await IdentityStore.open(auth_database, schema, dialect="postgres")
    try:
        await store.run(
            lambda conn: conn.execute(
                "INSERT INTO users (user_id, username, username_key)"
                # Long names: the skeletons' cost grows with them, the reading's hardly.
                " SELECT 'u' || n, 'member-of-the-platform-team-' || n,"
                "        'member-of-the-platform-team-' || n"
                "   FROM generate_series(1, $1::int) AS n",
                MANY_USERS,
            )
        )
        started = time.thread_time()
        rows = await store.run(lambda conn: conn.fetch("SELECT user_id, username FROM users"))
        pairs = [(r["user_id"], r["username"]) for r in rows]
        reading = time.thread_time() - started
        started = time.thread_time()
        assert confusable_holder(pairs, "someone-new", "") is None
        skeletons = time.thread_time() - started
        started = time.thread_time()
        await store.run(
            lambda conn: refuse_confusable(
                conn, "someone-new", "username", lock=store.dialect.username_check_lock
            )
        )
        on_the_loop = time.thread_time() - started
    finally:
        await store.run(lambda conn: conn.execute(f'DROP SCHEMA "{schema}" CASCADE'))
        await store.close()
    assert skeletons > 0.05, f"{MANY_USERS} skeletons took {skeletons:.3f} s: too quick to tell"
    assert on_the_loop < reading + skeletons / 2, (on_the_loop, reading, skeletons)
