"""``bugless login``, ``bugless logout``, ``bugless whoami``: the API as yourself (issue 19).

``login`` makes a key pair on this machine, sends only a certificate signing
request to the web UI, and waits while you approve it in a browser where you
are signed in (it opens one, or prints the URL and code for a machine
without one: a device-code flow). The certificate it gets back is stored
beside the key in the config directory (``~/.config/bugless``, mode 0600)
and named in ``client.toml``, so every later command uses it until it
expires; then a command says to run ``bugless login`` again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.const import Status

from bugless_api._connection_settings import config_path, read_config_file
from bugless_api.cli._common import Detail, client_options, command, fail
from bugless_core.cli import exit_status_of
from bugless_core.errors import (
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    from_status,
)

#: Longest a login waits for approval when the server does not say.
_DEFAULT_WAIT_SECONDS = 600


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (created so, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


#: What the person must do when the web UI refuses a request field ``bugless login``
#: filled: the option it came from (None: the command's own doing) and the advice.
_FIELD_ADVICE: dict[str, tuple[str | None, str]] = {
    "label": ("--label", "give another --label, or none (this machine's name is used)"),
    "validity_seconds": (
        "--hours",
        "give --hours as a number of hours above 0, or leave it out for the server's default",
    ),
    "csr_pem": (
        None,
        "the web UI refused the certificate request this command made ({detail}); this "
        "bugless and the server's disagree: upgrade bugless, or tell whoever runs the server",
    ),
    "device_code": (
        None,
        "the web UI no longer knows this login (it expired, or was cleared); "
        "run `bugless login` again",
    ),
}


def refusal_in_words(message: str, *, retry_after: str | None = None) -> str:
    """A refusal of the device endpoints as what the person must do.

    The Authenticator's messages name the request field at fault
    (``label: at most 100 characters``): a person typed ``--label``, never
    ``label``, and did not make the CSR at all. A refusal for a field the
    command fills from an option names the option and says what to give; one
    for a field the command fills itself says who can fix it; a message that
    names no field (a rate limit, a server without a people CA) already says
    what to do and is kept, with the wait the server asks for.
    """
    field, colon, detail = message.partition(": ")
    if colon and field in _FIELD_ADVICE:
        option, advice = _FIELD_ADVICE[field]
        advice = advice.format(detail=detail)
        return f"{option}: {detail}; {advice}" if option else advice
    if retry_after and "try again" not in message:
        return f"{message} (try again in {retry_after} s)"
    return message


def refusal_of(
    url: str, status: int, phrase: str, body: bytes, *, retry_after: str | None = None
) -> BuglessError:
    """The bugless error an HTTP refusal of a device endpoint (``url``) stands for.

    ``bugless login`` ends with :func:`bugless_core.cli.exit_status_of` of it,
    as every client command ends with that of the API's answer, so its exit
    status is the documented table's. The web UI refuses with
    ``{"error": message, "code": gRPC status name}``: the error is the one
    that status makes (:func:`bugless_core.errors.from_status`), with the
    message as what the person must do (:func:`refusal_in_words`); an
    unknown code is UNKNOWN (exit 1). An answer that is no such refusal is
    a server that failed when it is a 5xx (the web UI down behind its load
    balancer during a rollout: the address is right), and otherwise another
    site or a web UI too old to have the endpoint, so ``--web`` is the
    command's own setting at fault (bad configuration, exit 2).

    Args:
        url: The endpoint that answered.
        status: Its HTTP status (4xx or 5xx).
        phrase: Its reason phrase ("Not Found").
        body: What it answered.
        retry_after: Its ``Retry-After`` header, if any.
    """
    try:
        said = json.loads(body)
    except (ValueError, RecursionError):
        said = None
    message = said.get("error") if isinstance(said, dict) else None
    if isinstance(said, dict) and isinstance(message, str) and message:
        code = said.get("code")
        status_code = Status.__members__.get(code) if isinstance(code, str) else None
        return from_status(
            (status_code or Status.UNKNOWN).value,
            refusal_in_words(message, retry_after=retry_after),
        )
    if status >= 500:
        return Unavailable(
            f"{url} answered {status} {phrase}: the web UI, or a proxy in front of it, "
            "failed; try again shortly, and tell whoever runs bugless if it lasts"
        )
    return InvalidArgument(
        f"{url} answered {status} {phrase}, not as the bugless web UI does; "
        "check that --web is the address of the bugless web UI",
        metadata={"origin": "client"},
    )


def _fail_with(error: BuglessError) -> NoReturn:
    """End ``login`` with ``error``'s message and its status in the exit-status table."""
    fail(error.message, exit_status_of(error, answered_by_service=True))


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        try:
            answered = exc.read()
        except OSError:
            answered = b""
        _fail_with(
            refusal_of(
                url, exc.code, exc.reason, answered, retry_after=exc.headers.get("retry-after")
            )
        )
    except (urllib.error.URLError, OSError) as exc:
        _fail_with(Unavailable(f"cannot reach {url}: {getattr(exc, 'reason', exc)}"))


def ended_login(state: str) -> BuglessError:
    """Why a device login that ``state`` ("denied", "expired", "delivered") ended unapproved.

    None of them is bad usage: the person denied it in the web UI, nobody
    approved it in time, or an earlier poll took the certificate (an answer
    lost on the way). Each is the web UI refusing this login, exit 1, and
    the cure is the same: run ``bugless login`` again.
    """
    message = f"the login was {state}; run `bugless login` again"
    if state == "denied":
        return PermissionDenied(message)
    return FailedPrecondition(message)


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is JSON-compatible for paths


def _save_config(path: Path, values: dict[str, str]) -> dict[str, Any]:
    """Merge ``values`` into the config file; returns everything it now holds.

    Raises:
        InvalidArgument: (origin ``client``) the file cannot be read or is not TOML.
        OSError: it cannot be written.
    """
    current = read_config_file(path)
    current.update(values)
    text = "".join(f"{key} = {_toml_string(str(value))}\n" for key, value in current.items())
    _write_private(path, text.encode())
    return current


def _check_config(config: Path) -> None:
    """Refuse, before the web UI is asked, a config the login could not be saved in.

    The person approves the login in a browser; a config file that does not
    read, or a directory the certificate cannot be written to, found only
    after that, wasted the approval (and was a traceback).

    Raises:
        InvalidArgument: (origin ``client``, exit 2) the config file cannot be
            read or is not TOML, or its directory cannot be made or written.
    """
    read_config_file(config)
    directory = config.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".bugless-login-"):
            pass  # the real check: permission bits do not stop root
    except OSError as exc:
        raise InvalidArgument(
            f"cannot write the login's files in {directory} ({exc.strerror or exc}); nothing "
            "was asked of the web UI: set BUGLESS_CLIENT_CONFIG to a file in a directory you "
            "can write",
            metadata={"origin": "client"},
        ) from exc


def _unconfigured(saved: dict[str, Any]) -> list[str]:
    """What every later command needs that neither the config nor the environment gives.

    ``bugless login`` needs only the web UI; the commands after it need the
    API's address and the CA of its certificate too. Without them each one
    would fail with "not configured", after a login that looked complete.
    """
    needed = (("api", "BUGLESS_API", "--api HOST:PORT"), ("ca", "BUGLESS_CA", "--ca FILE"))
    return [flag for key, env, flag in needed if not saved.get(key) and not os.environ.get(env)]


@click.command("login")
@click.option(
    "--web",
    "web_url",
    envvar="BUGLESS_WEB_URL",
    required=True,
    help="URL of the bugless web UI, e.g. https://bugs.example.com [env BUGLESS_WEB_URL].",
)
@click.option("--api", envvar="BUGLESS_API", default=None, help="host:port of the bugless API.")
@click.option("--ca", envvar="BUGLESS_CA", default=None, help="CA bundle of the API's certificate.")
@click.option("--label", default="", help="What to call this certificate in your list.")
@click.option(
    "--hours", type=click.FloatRange(min=0.001), default=None, help="Validity (server default: 12)."
)
@click.option("--no-browser", is_flag=True, help="Print the URL and code; open no browser.")
def login_command(  # noqa: PLR0917 - click passes every option by keyword anyway
    web_url: str, api: str | None, ca: str | None, label: str, hours: float | None, no_browser: bool
) -> None:
    """Get a short-lived client certificate for yourself, approved in the web UI."""
    base = web_url.rstrip("/")
    config = config_path()
    directory = config.parent
    try:
        _check_config(config)
    except InvalidArgument as exc:
        _fail_with(exc)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    label = label or f"bugless login on {os.uname().nodename}"
    started = _post(
        f"{base}/device/start",
        {"csr_pem": csr, "label": label, "validity_seconds": (hours or 0) * 3600},
    )
    url = str(started.get("verification_uri_complete") or started.get("verification_uri"))
    click.echo(f"To approve, open {url}")
    click.echo(f"and check that it shows the code {started['user_code']}.")
    if not no_browser:
        webbrowser.open(url)
    interval = max(1, int(started.get("interval") or 2))
    deadline = time.monotonic() + int(started.get("expires_in") or _DEFAULT_WAIT_SECONDS)
    while True:
        if time.monotonic() > deadline:
            _fail_with(
                FailedPrecondition(
                    "the code expired before it was approved; run `bugless login` again"
                )
            )
        time.sleep(interval)
        answer = _post(f"{base}/device/poll", {"device_code": started["device_code"]})
        state = answer.get("state")
        if state == "approved" and answer.get("certificate_pem"):
            break
        if state in ("denied", "expired", "delivered"):
            _fail_with(ended_login(str(state)))
    cert_file, key_file = directory / "login.pem", directory / "login.key"
    values = {"cert": str(cert_file), "key": str(key_file)}
    if api:
        values["api"] = api
    if ca:
        values["ca"] = str(Path(ca).expanduser().resolve())
    try:
        _write_private(
            key_file,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        _write_private(cert_file, str(answer["certificate_pem"]).encode())
        saved = _save_config(config, values)
    except InvalidArgument as exc:  # the config changed while the login waited
        _fail_with(exc)
    except OSError as exc:
        _fail_with(
            InvalidArgument(
                f"cannot save the login in {directory} ({exc.strerror or exc}); run "
                "`bugless login` again once it can be written",
                metadata={"origin": "client"},
            )
        )
    certificate = x509.load_pem_x509_certificate(str(answer["certificate_pem"]).encode())
    until = certificate.not_valid_after_utc.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    click.echo(f"Logged in as {answer.get('username')}; the certificate is valid until {until}.")
    click.echo(f"It is in {cert_file} (its key never left this machine); {config} names it.")
    missing = _unconfigured(saved)
    if missing:
        click.echo(
            f"note: commands also need {' and '.join(missing)} (the API's address and the CA "
            f"of its certificate), which this login was not given: add them to {config} "
            '(api = "HOST:PORT", ca = "/path/to/ca.pem"), export BUGLESS_API and BUGLESS_CA, '
            "or give them to the next `bugless login`",
            err=True,
        )


@command
async def _logout(client: Any) -> Detail:
    revoked = await client.logout()
    return Detail(
        lines=[("revoked certificate", revoked.serial), ("of", revoked.username)],
        data={"revoked": revoked.serial, "username": revoked.username},
    )


@click.command("logout")
@client_options
def logout_command(**params: Any) -> None:
    """Revoke this machine's login certificate and delete it."""
    _logout(**params)
    config = config_path()
    for name in ("login.pem", "login.key"):
        (config.parent / name).unlink(missing_ok=True)


@click.command("whoami")
@client_options
@command
async def whoami_command(client: Any) -> Detail:
    """Who the configured certificate acts as (username, groups, permissions)."""
    identity = await client.whoami()
    user = identity.user
    return Detail(
        lines=[
            ("username", user.username),
            ("name", user.display_name),
            ("user id", user.user_id),
            ("kind", "bot" if user.bot else "person"),
            ("groups", ", ".join(identity.groups) or "-"),
            ("signed in by", identity.authenticator),
            ("may", ", ".join(p.replace("_", " ") for p in identity.permissions) or "-"),
        ],
        data=identity,
    )


__all__ = ["login_command", "logout_command", "whoami_command"]
