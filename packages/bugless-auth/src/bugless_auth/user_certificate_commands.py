"""``bugless auth user certificates``: list or revoke a person's `bugless login` certificates.

A sibling of ``bugless auth user sessions`` (:mod:`bugless_auth.user_commands`,
whose group adds it): the database directly, the same options, output and
exit statuses (2 a value refused, 3 a user or certificate not there or no
longer live). The work is :mod:`bugless_auth.certificate_admin`'s, imported
when the command runs, so ``--help`` loads no driver.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from bugless_auth.commands import DATABASE_SETTINGS, ENV_PREFIX
from bugless_auth.settings import AuthSettings
from bugless_auth.user_command_store import lock_wait_option, log_options, with_store
from bugless_core.settings import settings_command

if TYPE_CHECKING:
    from bugless_auth.store import IdentityStore

#: Who a revocation made here is recorded as revoked by, and why.
REVOKED_BY = "bugless auth user certificates"
REVOKED_REASON = "revoked with bugless auth user certificates"

USER_CERTIFICATES_HELP = """List USERNAME's client certificates from the people CA, or revoke some.

The certificates `bugless login` and the web's API access page got signed
for the person, newest first (up to 500; rows are purged 30 days after they
expire): serial, state (live, revoked, expired), label and how it was
issued, when it was issued and expires, when it was revoked, by whom and
why, and when it was last used to reach the API as far as its sessions
record (to within a few minutes; "not recorded" once they are purged, a day
after they expire).

--revoke SERIAL (repeatable) and --revoke-all revoke, recording "revoked with
bugless auth user certificates", and end the certificate's sessions: a new
API connection with it is refused at once, and one already open at its next
call once the Model has learnt that its session ended (the Model's
--assertion-refresh-seconds, 5 seconds by default). A serial that is not the
user's, revoked already or expired is refused (exit 3), saying which, and
nothing is revoked. With --json the output is {"certificates_revoked": N,
"certificates": [...]}.

When an account may be compromised, first make sure whoever it is cannot
sign in again (change the password, or the directory's), then run `bugless
auth user sessions USERNAME --end-all` and this with --revoke-all, in that
order (a web session left could have a new certificate signed): that locks
whoever holds a session or a certificate out without disabling the account.
The person gets a new certificate with `bugless login` once signed in.
"""


@click.command("certificates", help=USER_CERTIFICATES_HELP)
@click.argument("username")
@click.option(
    "--revoke",
    "serials",
    multiple=True,
    metavar="SERIAL",
    help="Revoke this live certificate of the user (repeatable; all or none); then list.",
)
@click.option(
    "--revoke-all",
    is_flag=True,
    help="Revoke every live certificate of the user; then list.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@log_options
@lock_wait_option
@settings_command(AuthSettings, env_prefix=ENV_PREFIX, only=DATABASE_SETTINGS)
def user_certificates_command(
    settings: AuthSettings,
    *,
    username: str,
    serials: tuple[str, ...],
    revoke_all: bool,
    as_json: bool,
    lock_wait_seconds: float,
) -> None:
    """List or revoke USERNAME's people-CA certificates (:data:`USER_CERTIFICATES_HELP`)."""
    from bugless_auth import certificate_admin  # noqa: PLC0415 - module docstring
    from bugless_core.errors import NotFound  # noqa: PLC0415

    if revoke_all and serials:
        raise click.UsageError("--revoke-all revokes every certificate: give it or --revoke")
    revoking = revoke_all or bool(serials)
    revoked_count = 0

    async def work(store: IdentityStore) -> list[dict[str, Any]]:
        nonlocal revoked_count
        found = await store.users_by_usernames([username])
        if not found:
            raise NotFound(f"username: no bugless user is called {username!r}")
        person = found[0]
        if revoking:
            revoked = await certificate_admin.revoke_certificates(
                store,
                user_id=person.user_id,
                username=person.username,
                serials=None if revoke_all else serials,
                by=REVOKED_BY,
                reason=REVOKED_REASON,
            )
            revoked_count = len(revoked)
        rows = await certificate_admin.list_certificates(store, person.user_id)
        return [_shown(row, certificate_admin.certificate_state(row)) for row in rows]

    listed = with_store(
        settings,
        work,
        command="certificates",
        lock_wait_seconds=lock_wait_seconds,
        option_names={"username": "USERNAME", "serial": "--revoke"},
    )
    if as_json:
        shown: Any = (
            {"certificates_revoked": revoked_count, "certificates": listed} if revoking else listed
        )
        click.echo(json.dumps(shown, indent=2))
        return
    if revoking:
        click.echo(f"revoked {revoked_count} certificate(s) of {username}")
    if not listed:
        click.echo(f"{username} has no certificates from the people CA")
    for row in listed:
        click.echo(_line(row))


def _shown(row: Any, state: str) -> dict[str, Any]:
    """A certificate's row as the command shows it (JSON's keys; times ISO 8601)."""

    def when(value: Any) -> str | None:
        return None if value is None else str(value.isoformat())

    return {
        "serial": row["serial"],
        "state": state,
        "label": row["label"],
        "source": row["source"],
        "fingerprint": row["fingerprint"],
        "issued_at": when(row["issued_at"]),
        "expires_at": when(row["not_after"]),
        "revoked_at": when(row["revoked_at"]),
        "revoked_by": row["revoked_by"] if row["revoked_at"] is not None else None,
        "revoked_reason": row["revoked_reason"] if row["revoked_at"] is not None else None,
        "last_used_at": when(row["last_used_at"]),
    }


def printable(text: str) -> str:
    r"""``text`` with what is not printable escaped as ``repr`` escapes it (``\x1b``).

    A label is a person's text, printed to the operator's terminal: one
    stored before labels were checked (or written to the table by hand)
    could hold ESC, CR or U+202E and rewrite or reorder what the operator
    reads. The JSON output needs none of this (``json.dumps`` escapes them).
    """
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _line(row: dict[str, Any]) -> str:
    """One certificate as a line of the text output."""
    label = printable(row["label"]) if row["label"] else "-"
    line = (
        f"{row['serial']}  {row['state']:<7} {row['source']:<6} {label}  "
        f"issued {row['issued_at']}  expires {row['expires_at']}  "
        f"last used {row['last_used_at'] or 'not recorded'}"
    )
    if row["revoked_at"] is not None:
        why = f": {printable(row['revoked_reason'])}" if row["revoked_reason"] else ""
        line += f"  revoked {row['revoked_at']} by {row['revoked_by'] or '-'}{why}"
    return line
