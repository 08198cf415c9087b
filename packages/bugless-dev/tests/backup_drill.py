"""What the drills of docs/backup.md share: the stack they run, the dump and the restore.

``test_backup_restore.py`` (attachments in the database) and
``test_backup_restore_s3.py`` (attachments in an S3 bucket) both run a real
tracker, dump its databases with the guide's ``pg_dump`` command, restore
them with its ``pg_restore`` command and start a tracker on them with the
same keys; this module is that common part, so the two drills cannot come to
follow two versions of the guide. The drills (and the live upgrade's) reach
that tracker as its people do, through a bot's API client and the web's
sign-in form, made here once.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from bugless_api.client import BuglessClient
from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_dev.stack import LocalStack, RunningService, StackConfig

PASSWORD = "correct horse battery staple"
#: One page-token secret for the tracker of before and the restored one (a Secret kept apart).
PAGE_TOKEN_SECRET = "backup-drill-page-token-secret-0123456789"


def drill_stack(
    directory: Path, pki: LocalPki, model_url: str, auth_url: str, **more: object
) -> LocalStack:
    """A stack on the given databases with the drill's page-token secret (``more``: config)."""
    config = StackConfig(
        directory=directory,
        pki=pki,
        model_database_url=model_url,
        auth_database_url=auth_url,
        page_token_secret=PAGE_TOKEN_SECRET,
        **more,  # type: ignore[arg-type]
    )
    return LocalStack(config)


def dump(server: ThrowawayPostgres, database_url: str, file: Path) -> None:
    """``pg_dump`` as docs/backup.md gives it: one consistent snapshot, custom format."""
    subprocess.run(
        [
            server.client_program("pg_dump"),
            "--format=custom",
            "--serializable-deferrable",
            "--file",
            str(file),
            database_url,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def restore(server: ThrowawayPostgres, file: Path, database_url: str) -> None:
    """``pg_restore`` into an empty database, stopping at the first error."""
    subprocess.run(
        [
            server.client_program("pg_restore"),
            "--exit-on-error",
            "--no-owner",
            "--dbname",
            database_url,
            str(file),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def api_client(stack: LocalStack, api: RunningService, bot: CertificateFiles) -> BuglessClient:
    """A bot's client of the stack's API frontend (mutual TLS)."""
    return BuglessClient(
        f"127.0.0.1:{api.port}", cert=bot.cert, key=bot.key, ca=stack.pki.ca_file, timeout=60
    )


async def sign_in(browser: httpx.AsyncClient, username: str) -> str:
    """Sign in through the web's form; returns the session's CSRF token."""

    def csrf(html: str) -> str:
        found = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert found is not None, "the page carries no CSRF token"
        return found.group(1)

    form = await browser.get("/signin")
    signed_in = await browser.post(
        "/signin",
        data={"username": username, "password": PASSWORD, "_csrf": csrf(form.text), "next": "/"},
    )
    assert signed_in.status_code == 303, signed_in.text[:500]
    return csrf((await browser.get("/")).text)
