"""``bugless auth bot issue``: an operator gives a team's bot its client certificate.

Named by reference from :mod:`bugless_auth.commands`. The command reads files
only (the team's CSR, the CA, the mapping file) and touches no database or
service: the Authenticator serving with that mapping file picks the new
entry up within its ``reload_check_seconds``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from bugless_core.errors import BuglessError, InvalidArgument

#: Validity of a bot certificate when the operator names none.
DEFAULT_DAYS = 90


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` at once: a serving Authenticator never reads half a mapping.

    The new file keeps the old one's permission bits (the Authenticator's
    account may read it only through its group), and a write that fails
    leaves the old file as it was and no temporary file behind.

    Raises:
        InvalidArgument: the file cannot be written (a read-only
            directory, a missing one): said as such, not a traceback, and
            exiting 2 as a ``-o`` the client commands cannot write does.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
        temporary.write_text(text, encoding="utf-8")
        if mode is not None:
            temporary.chmod(mode)
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # never written, or its directory is gone
            temporary.unlink()
        raise InvalidArgument(
            f"--mapping-file: cannot write {path} ({exc.strerror or exc}); nothing was issued "
            "or changed: run the command where the file is writable (with a ConfigMap, on a "
            "local copy you then apply)"
        ) from exc


@dataclass(frozen=True)
class _OpenedOut:
    """``--out``, opened for the certificate before anything was written."""

    path: Path
    descriptor: int
    made: bool  # by this open: a refusal after it removes the file again

    def abandon(self) -> None:
        """Leave ``--out`` as it was before the command: a file it made is removed."""
        os.close(self.descriptor)
        if self.made:
            self.path.unlink(missing_ok=True)


def _open_out(out: Path) -> _OpenedOut:
    """Open ``--out`` for the certificate before the mapping is written.

    Opened without truncating, so a refusal found later (the mapping cannot
    be written) leaves a file that was there as it was. A check by
    permission bits would not do: the command often runs as root, which
    they do not stop, and a missing directory has no bits to check.

    Raises:
        InvalidArgument: ``out`` cannot be opened for writing; nothing was
            issued or changed.
    """
    existed = out.exists()
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise InvalidArgument(
            f"--out: cannot write {out} ({exc.strerror or exc}); nothing was issued or "
            "changed: name a file you can write, or leave --out out to print the certificate"
        ) from exc
    return _OpenedOut(out, descriptor, made=not existed)


def _write_certificate(out: _OpenedOut, pem: str, name: str) -> None:
    """Write the certificate to the opened ``--out``, after the mapping took its name.

    Raises:
        InvalidArgument: the write failed (a full disk); the message says the
            name is mapped, so running again with another ``--out`` is a
            renewal that hands the certificate out.
    """
    try:
        with os.fdopen(out.descriptor, "w", encoding="utf-8") as file:
            if stat.S_ISREG(os.fstat(out.descriptor).st_mode):
                file.truncate(0)  # a pipe or a terminal has nothing to truncate
            file.write(pem)
    except OSError as exc:
        raise InvalidArgument(
            f"--out: cannot write {out.path} ({exc.strerror or exc}); {name!r} is mapped: "
            "run the command again with another --out (the mapping stays as it is)"
        ) from exc


def _read_option_file(path: Path, option: str) -> bytes:
    """The bytes of the file ``option`` names.

    Raises:
        click.BadParameter: it cannot be read, said as click says it of
            ``--csr`` (``Invalid value for '--ca-cert': 'PATH': No such
            file or directory``). A file an option names that is missing is
            bad usage (exit 2) like the option missing, by the exit-status
            table: its "not found" (3) is of the tracker's things (users,
            issues), which a file on the operator's machine is not.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.BadParameter(
            f"{str(path)!r}: {exc.strerror or exc}", param_hint=f"'{option}'"
        ) from exc


@click.group("bot")
def bot_group() -> None:
    """Give bots their client certificates (signed here, mapped in the tls mapping file)."""


@bot_group.command("issue")
@click.argument("name")
@click.option(
    "--csr",
    "csr_file",
    type=click.File("r"),
    required=True,
    help="The team's certificate signing request (PEM; '-' reads stdin). Its subject is "
    "empty or CN=NAME; the team keeps the key.",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Certificate of the CA the API trusts for bots (in its --client-ca bundle).",
)
@click.option(
    "--ca-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="That CA's private key (PEM, unencrypted).",
)
@click.option(
    "--mapping-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BUGLESS_AUTH_TLS_MAPPING_FILE",
    required=True,
    help="The tls authenticator's mapping file (JSON or TOML; made when missing): NAME is "
    "added to it, mapped to --username.",
)
@click.option("--username", default=None, help="The bot's bugless username [default: NAME].")
@click.option("--display-name", default="", help="The bot's display name [default: username].")
@click.option(
    "--groups", default="", metavar="A,B", help="The bot's groups, comma-separated (e.g. bots)."
)
@click.option(
    "--days",
    type=float,
    default=DEFAULT_DAYS,
    show_default=True,
    help="How long the certificate is valid.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the certificate here [default: stdout].",
)
def issue_command(  # noqa: PLR0917 - click passes every option by keyword anyway
    name: str,
    csr_file: TextIO,
    ca_cert: Path,
    ca_key: Path,
    mapping_file: Path,
    username: str | None,
    display_name: str,
    groups: str,
    days: float,
    out: Path | None,
) -> None:
    """Sign a bot's CSR with the bots' CA and map its NAME (CN) to a bot user.

    Everything is checked before anything is written: a refused CSR, CA,
    name or mapping leaves the mapping file as it was and writes no
    certificate; so does an --out that cannot be written (it is opened
    first) and a mapping file that cannot be written (the mapping is written
    before the certificate is handed out). A NAME already mapped
    to the same user is a renewal: the mapping stays, and the bot keeps its
    user id.
    """
    from bugless_auth.bot_certificates import mapping_with_bot, sign_bot_csr  # noqa: PLC0415
    from bugless_auth.commands import refusal  # noqa: PLC0415 - it names this module

    ca_cert_pem = _read_option_file(ca_cert, "--ca-cert")
    ca_key_pem = _read_option_file(ca_key, "--ca-key")
    user = username or name
    try:
        issued = sign_bot_csr(
            csr_file.read(), name=name, ca_cert_pem=ca_cert_pem, ca_key_pem=ca_key_pem, days=days
        )
        mapping = mapping_with_bot(
            mapping_file,
            name,
            username=user,
            groups=[g.strip() for g in groups.split(",") if g.strip()],
            display_name=display_name,
        )
        # --out is opened before anything is written, so one that cannot be
        # written refuses with the mapping as it was. The mapping is then
        # written first: a certificate handed out for a name the mapping
        # could not take would be refused at its first connection.
        opened = None if out is None else _open_out(out)
        try:
            if mapping is not None:
                _write_atomically(mapping_file, mapping)
        except BaseException:
            if opened is not None:
                opened.abandon()
            raise
        if opened is None:
            click.echo(issued.pem, nl=False)
        else:
            _write_certificate(opened, issued.pem, name)
    except BuglessError as exc:  # the exit status of its kind: 2 refused, 4 a name taken
        raise refusal(exc) from exc
    mapped = "added to" if mapping is not None else "already in"
    click.echo(
        f"issued CN={name} (serial {issued.serial}, valid until "
        f"{issued.not_after:%Y-%m-%d %H:%M} UTC); {name!r} -> bot {user!r} {mapped} "
        f"{mapping_file}",
        err=True,
    )
