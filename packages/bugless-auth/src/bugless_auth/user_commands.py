"""``bugless auth user`` add, update, rename, merge, set-password, disable, sessions: the store.

``bugless auth user certificates`` is in
:mod:`bugless_auth.user_certificate_commands`, added to the group at the end.

The user commands talk to the database directly: they are how the first
administrator exists, before anyone could call CreateLocalUser with a token.
Named by reference from :mod:`bugless_auth.commands`; this module imports
the settings and :mod:`bugless_auth.sessions` (whose figures the help states;
it loads no driver) only, and each command the store (asyncpg) and password
hashing when it runs, so ``bugless auth user add --help`` loads none of them.
How a command reaches the store, and the options and output several share,
are :mod:`bugless_auth.user_command_store`'s.

Their exit statuses are the documented table's (``bugless --help``,
docs/cli.md), as the client commands': 2 for a value refused (a username
that cannot be one, a password too short, a group the user is not in),
3 for a user or session that is not there, 4 for a username taken, and 1 for
the rest (a user another authenticator holds, the database away or locked).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import click

from bugless_auth.commands import DATABASE_SETTINGS, ENV_PREFIX, HASHING_SETTINGS
from bugless_auth.sessions import LAST_USED_GRANULARITY_SECONDS, SessionStore
from bugless_auth.settings import AuthSettings
from bugless_auth.user_certificate_commands import user_certificates_command
from bugless_auth.user_command_store import (
    chosen_password,
    lock_wait_option,
    log_options,
    password_option,
    password_options,
    print_user,
    with_store,
)
from bugless_core.settings import settings_command

if TYPE_CHECKING:
    from bugless_auth.store import IdentityStore, UserRecord


@click.group("user")
def user_group() -> None:
    """Manage users of the local store (connects to the database directly).

    What a command does to a person (sessions ended, certificates revoked, a
    disable, a rename or merge) is logged on stderr as the services log
    (--log-level, --log-json); stdout holds the command's answer.
    """


@user_group.command("add")
@click.argument("username")
@click.option("--display-name", default="", help="Name shown on user chips (default: username).")
@click.option("--email", default="", help="Mail address.")
@click.option("--groups", default="", help="Comma-separated group names, e.g. triagers,oncall.")
@click.option(
    "--admin", is_flag=True, help="Add to the group `admins` (the default policy's admin)."
)
@click.option("--bot", is_flag=True, help="Mark as a machine account.")
@password_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(
    AuthSettings,
    env_prefix=ENV_PREFIX,
    only=(*DATABASE_SETTINGS, "min_password_length", *HASHING_SETTINGS),
)
def user_add_command(
    settings: AuthSettings,
    *,
    username: str,
    display_name: str,
    email: str,
    groups: str,
    admin: bool,
    bot: bool,
    password: str | None,
    password_stdin: bool,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Add USERNAME to the local store; without a password, one is generated and printed."""
    from bugless_auth.passwords import PasswordHashes  # noqa: PLC0415 - module docstring
    from bugless_auth.user_admin import create_local_user  # noqa: PLC0415

    chosen, generated = chosen_password(password, password_stdin)
    group_names = [g.strip() for g in groups.split(",") if g.strip()]
    if admin and "admins" not in group_names:
        group_names.append("admins")
    hashes = PasswordHashes(settings.hashing)

    async def add(store: IdentityStore) -> UserRecord:
        return await create_local_user(
            store,
            hashes,
            username=username,
            display_name=display_name,
            email=email,
            password=chosen,
            groups=group_names,
            min_password_length=settings.min_password_length,
            bot=bot,
        )

    record = with_store(
        settings,
        add,
        command="add",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "USERNAME", "password": password_option(password_stdin)},
    )
    print_user(record, as_json, chosen if generated else None)


@user_group.command("set-password")
@click.argument("username")
@password_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=(*DATABASE_SETTINGS, *HASHING_SETTINGS))
def user_passwd_command(
    settings: AuthSettings,
    *,
    username: str,
    password: str | None,
    password_stdin: bool,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Set USERNAME's local password; without one, one is generated and printed.

    This is how a lost password (the administrator's too) is replaced: it
    writes the Authenticator's database directly, so it needs no sign-in.
    """
    from bugless_auth.passwords import PasswordHashes  # noqa: PLC0415 - module docstring

    chosen, generated = chosen_password(password, password_stdin)
    hashes = PasswordHashes(settings.hashing)

    async def change(store: IdentityStore) -> UserRecord:
        hashes.check_acceptable(chosen, 1)
        return await store.set_local_password(username, await hashes.hash(chosen))

    record = with_store(
        settings,
        change,
        command="set-password",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "USERNAME", "password": password_option(password_stdin)},
    )
    print_user(record, as_json, chosen if generated else None)


# The command's first name, kept for scripts written against it.
_PASSWD_ALIAS = copy.copy(user_passwd_command)
_PASSWD_ALIAS.hidden = True
user_group.add_command(_PASSWD_ALIAS, "passwd")


@user_group.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Re-enable instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_disable_command(
    settings: AuthSettings,
    *,
    username: str,
    enable: bool,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Disable USERNAME (any authenticator's user): sign-ins stop and their sessions end."""
    from bugless_auth import disabling  # noqa: PLC0415 - module docstring

    ends = disabling.Ends(
        session_reason="disabled with bugless auth user disable", by="bugless auth user disable"
    )

    async def apply(store: IdentityStore) -> UserRecord:
        return (await disabling.set_disabled(store, username, not enable, ends)).record

    record = with_store(
        settings,
        apply,
        command="disable",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "USERNAME"},
    )
    print_user(record, as_json)


def _group_list(value: str) -> list[str]:
    return [g.strip() for g in value.split(",") if g.strip()]


@user_group.command("update")
@click.argument("username")
@click.option("--display-name", default=None, help="The new display name ('' for the username).")
@click.option("--email", default=None, help="The new mail address ('' removes it).")
@click.option(
    "--groups",
    default=None,
    help="The whole new group list, comma-separated ('' for none); not with "
    "--add-group/--remove-group.",
)
@click.option(
    "--add-group", "add_groups", multiple=True, metavar="GROUP", help="Add a group (repeatable)."
)
@click.option(
    "--remove-group",
    "remove_groups",
    multiple=True,
    metavar="GROUP",
    help="Remove a group (repeatable; one the user is not in is refused). Losing a group "
    "ends the user's sessions.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_update_command(
    settings: AuthSettings,
    *,
    username: str,
    display_name: str | None,
    email: str | None,
    groups: str | None,
    add_groups: tuple[str, ...],
    remove_groups: tuple[str, ...],
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Change a local USERNAME's display name, email or groups.

    Directory users (LDAP, OIDC, certificates) are refused: their directory
    states these at each sign-in. The change reaches every Authenticator
    replica through the users' change feed; a user who loses a group has
    their sessions ended at once (they sign in again with the groups they
    have now), as when their directory removes them from one.
    """
    from bugless_auth.local_profiles import (  # noqa: PLC0415 - module docstring
        ProfileChange,
        ProfileUpdated,
        update_local_user,
    )

    change = ProfileChange(
        display_name=display_name,
        email=email,
        groups=None if groups is None else _group_list(groups),
        add_groups=[g.strip() for g in add_groups],
        remove_groups=[g.strip() for g in remove_groups],
    )

    async def apply(store: IdentityStore) -> ProfileUpdated:
        return await update_local_user(store, username, change)

    done = with_store(
        settings,
        apply,
        command="update",
        lock_wait_seconds=lock_wait_seconds,
        option_names={
            "username": "USERNAME",
            "groups": "--groups",
            "add_groups": "--add-group",
            "remove_groups": "--remove-group",
        },
    )
    ended = {"sessions_ended": done.sessions} if done.lost else {}
    print_user(done.record, as_json, extra=ended)
    if done.lost and not as_json:
        click.echo(
            f"{done.record.username} lost {', '.join(done.lost)}: {done.sessions} session(s) "
            "ended; they sign in again with the groups above"
        )


@user_group.command("rename")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_rename_command(
    settings: AuthSettings,
    *,
    old: str,
    new: str,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Rename the local user OLD to NEW, keeping their id, issues, history and groups.

    NEW follows the rules of `auth user add`; one another user holds is
    refused. Open sessions go on under the new name, which every replica
    and frontend shows within about a poll of the users' change feed, no
    restart. Users of LDAP, OIDC or the tls mapping are refused: rename them
    where their username comes from. OLD names the user whose name it is
    whatever its case, or one spelt exactly OLD that `auth migrate` could not
    key (it lists them); the command says which account it renamed. OLD is
    free at once: texts keep @OLD, which then mentions whoever is called OLD
    next, and saved searches naming OLD no longer find this user.
    """
    from bugless_auth.user_renames import Renamed, rename_local_user  # noqa: PLC0415

    async def apply(store: IdentityStore) -> Renamed:
        return await rename_local_user(store, old, new)

    done = with_store(
        settings,
        apply,
        command="rename",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "OLD", "new_username": "NEW"},
    )
    if not as_json:  # which account: OLD may name one spelt otherwise
        named = (
            "" if done.was == old else f" ({old!r} named it: usernames are one whatever their case)"
        )
        click.echo(
            f"renamed the local user {done.was!r} ({done.record.user_id}) to "
            f"{done.record.username!r}{named}"
        )
    print_user(done.record, as_json, extra={"renamed_from": done.was})


@user_group.command("merge")
@click.argument("placeholder")
@click.argument("into")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_merge_command(
    settings: AuthSettings,
    *,
    placeholder: str,
    into: str,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """Merge an import's PLACEHOLDER account (ann@trac) into the real account INTO.

    What the imported person did then shows as INTO's on every page and
    counts as theirs in searches (reporter:INTO), with no history rewritten;
    running services follow within about a poll of the users' change feed.
    A real account as PLACEHOLDER, or a placeholder or a bot as INTO, is refused.
    """
    from bugless_auth.placeholders import merge_placeholder  # noqa: PLC0415 - module docstring

    async def apply(store: IdentityStore) -> UserRecord:
        return await merge_placeholder(store, placeholder, into)

    record = with_store(
        settings,
        apply,
        command="merge",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"placeholder": "PLACEHOLDER", "into": "INTO"},
    )
    if as_json:
        print_user(record, as_json, extra={"merged_into": into})
    else:
        click.echo(f"merged the placeholder {placeholder} into {into}")


def _minutes_or_seconds(seconds: float) -> str:
    """A duration as help text says it: whole minutes when it is some, else seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return f"{seconds:g} seconds"


#: ``bugless auth user sessions --help``. The last-use figure is the one the
#: sessions are recorded with (:data:`~bugless_auth.sessions.LAST_USED_GRANULARITY_SECONDS`),
#: so the help says what the code does when that changes.
USER_SESSIONS_HELP = f"""List USERNAME's live sessions (newest first), or end some with --end.

What the web's Sessions page shows its owner: how each was made, from
which address, when, when last used (to within
{_minutes_or_seconds(LAST_USED_GRANULARITY_SECONDS)}, plus a frontend's token cache), and
when it expires; and a people-ca session's certificate by the serial that
`bugless auth user certificates` lists (certificate_serial with --json).
An ended session is refused on its next validation by every Authenticator
replica.

--end-all ends every live session of --kind (all by default) at once, as
when an account may be compromised; with --json it prints
{{"sessions_ended": N, "sessions": [those still live]}}. It revokes nothing
else: the user can sign in again (with a changed password, say), and a
certificate of theirs from `bugless login` that is still valid opens a new
session at its next connection to the API: revoke them with `bugless auth
user certificates USERNAME --revoke-all`, which with --end-all locks the
person out without disabling the account. `bugless auth user disable` ends
the sessions and revokes those certificates too (they stay revoked after
--enable).
"""


@user_group.command("sessions", help=USER_SESSIONS_HELP)
@click.argument("username")
@click.option(
    "--end",
    "end_ids",
    multiple=True,
    metavar="SESSION_ID",
    help="End this session of the user (repeatable); the rest are listed as before.",
)
@click.option(
    "--end-all",
    is_flag=True,
    help="End every live session of the user of --kind (default: all); the rest are listed.",
)
@click.option(
    "--kind",
    type=click.Choice(["people", "services", "all"]),
    default="all",
    show_default=True,
    help="Which sessions to list (and end, with --end-all): the user's own sign-ins "
    "(people: password, single sign-on, client certificates), those of services acting "
    "for them (services: the notifier, imports), or all.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_sessions_command(
    settings: AuthSettings,
    *,
    username: str,
    end_ids: tuple[str, ...],
    end_all: bool,
    kind: str,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """List or end USERNAME's live sessions (what the command says: :data:`USER_SESSIONS_HELP`)."""
    from bugless_core.errors import NotFound  # noqa: PLC0415

    if end_all and end_ids:
        raise click.UsageError("--end-all ends every session: give it or --end, not both")
    ended_count = 0

    async def work(store: IdentityStore) -> list[dict[str, Any]]:
        nonlocal ended_count
        found = await store.users_by_usernames([username])
        if not found:
            raise NotFound(f"username: no bugless user is called {username!r}")
        user_id = found[0].user_id
        sessions = SessionStore(store)
        for session_id in end_ids:
            ended = await sessions.end(
                session_id, owner=user_id, reason="ended with bugless auth user sessions --end"
            )
            if ended is None:
                raise NotFound(
                    f"--end: {username} has no live session {session_id!r} (ended or expired "
                    "already?); sessions before it on the command line were ended"
                )
        if end_all:
            ended_count = await sessions.end_all(
                user_id, kind=kind, reason="ended with bugless auth user sessions --end-all"
            )
        rows = await sessions.list_live(user_id, after=None, limit=100_000, kind=kind)
        return [
            {
                "session_id": row["session_id"],
                "authenticator": row["authenticator"],
                "client_address": row["client_address"],
                "created_at": row["created_at"].isoformat(),
                "last_used_at": row["last_used_at"].isoformat(),
                "expires_at": row["expires_at"].isoformat(),
                "certificate_serial": row["certificate_serial"],
            }
            for row in rows
        ]

    listed = with_store(
        settings,
        work,
        command="sessions",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "USERNAME"},
    )
    if as_json:
        shown: Any = {"sessions_ended": ended_count, "sessions": listed} if end_all else listed
        click.echo(json.dumps(shown, indent=2))
        return
    if end_all:
        click.echo(f"ended {ended_count} session(s) of {username}")
    if not listed:
        of_kind = {"people": " of their own", "services": " of services"}.get(kind, "")
        click.echo(f"{username} has no live sessions{of_kind}")
    for row in listed:
        serial = row["certificate_serial"]
        click.echo(
            f"{row['session_id']}  {row['authenticator']:<10} {row['client_address'] or '-':<20} "
            f"signed in {row['created_at']}  last used {row['last_used_at']}  "
            f"expires {row['expires_at']}" + ("" if serial is None else f"  certificate {serial}")
        )


user_group.add_command(user_certificates_command)
