"""``bugless dev``: the whole tracker on one machine, for development and trying it out.

It runs what production runs — the Model on PostgreSQL, the Authenticator
(``local`` and ``tls`` backends), the API frontend and the web frontend — as
subprocesses of the ``bugless`` CLI, on loopback, over an embedded PostgreSQL
whose data stays in a state directory between runs.

Why subprocesses rather than one process:

- bugless-core may not import the backend or frontend packages (the import
  direction is the architecture), and through the CLI it needs none of them
  at import time: it relies only on their documented commands and variables;
- each service is started exactly as a deployment starts it (same command,
  flags, environment, signal handling, drain), so ``bugless dev`` is also a
  smoke test of the operator's path rather than a second way to wire things;
- uvicorn and the gRPC runner each want their own event loop and signal
  handlers; separate processes keep a crash or a hang in one visible in its
  log (``STATE/logs``) instead of taking the others down.

The price, a second or two of start-up per service, is paid in parallel.
Exit codes: 0 after Ctrl-C (or SIGTERM) stopped everything cleanly, 1 when a
service failed, 2 for bad usage or configuration (a port in use, an
unusable state directory, a missing package).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from bugless_core.cli import EXIT_ERROR, EXIT_USAGE, fail
from bugless_core.errors import BuglessError
from bugless_core.plugins import Plugins
from bugless_core.settings import settings_command
from bugless_dev._devstack import DevSettings, DevStack, Running, check_port
from bugless_dev._state import StateDirError, open_state_dir
from bugless_dev.postgres import PostgresUnavailable
from bugless_dev.processes import ServiceFailed

#: What ``bugless dev`` runs through the CLI, and the package that adds each.
REQUIRED_COMMANDS = {
    "auth": "bugless-auth",
    "api": "bugless-api",
    "web": "bugless-web",
    "notify": "bugless-notify",
    "issue": "bugless-api",
}


def _missing_packages(ctx: click.Context, plugins: Plugins) -> list[str]:
    root = ctx.find_root().command
    commands = root.list_commands(ctx) if isinstance(root, click.Group) else []
    missing = {package for name, package in REQUIRED_COMMANDS.items() if name not in commands}
    if "postgres" not in plugins.model_backends:
        missing.add("bugless-model-postgres")
    return sorted(missing)


@click.command("dev")
@click.pass_context
@settings_command(DevSettings, env_prefix="BUGLESS_DEV_")
def dev_command(ctx: click.Context, settings: DevSettings) -> None:
    """Run the whole tracker locally on an embedded PostgreSQL until Ctrl-C.

    Starts PostgreSQL (data kept in --state-dir), the Model, the
    Authenticator, the gRPC API, the web UI and the notifier (mailing to a
    local sink the web UI shows at /dev/mail, or to --smtp-relay) on
    127.0.0.1; creates an
    administrator on the first start and prints its password once; mints a
    development CA and a bot certificate and prints how to use the API.
    As root, PostgreSQL runs as the system user `embedded_postgres`.
    """
    ignored = ignored_service_settings(os.environ)
    if ignored:
        click.echo(
            f"note: ignoring {', '.join(ignored)} from this shell: bugless dev sets every "
            "service's settings itself (attachments, for one, stay in its database)",
            err=True,
        )
    missing = _missing_packages(ctx, ctx.obj)
    if missing:
        fail(
            "bugless dev runs every service; install "
            + " ".join(missing)
            + " (from a checkout: pip install "
            + " ".join(f"./packages/{name}" for name in missing)
            + ")"
        )
    try:
        web_port = check_port(settings.port, "--port")
        api_port = check_port(settings.api_port, "--api-port")
        state = open_state_dir(settings.state_dir, reset=settings.reset)
    except StateDirError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        # The standard loop: the supervisor only waits (the services it starts
        # run on uvloop, through their own serve commands).
        code = asyncio.run(_run(settings, DevStack(settings, state, _echo), web_port, api_port))
    finally:
        state.close()
    ctx.exit(code)


#: Variables of the clients (``bugless issue``, ``bugless import``) and of
#: ``bugless dev`` itself: a shell that pasted the printed export lines has them.
_NOT_SERVICE_SETTINGS = ("BUGLESS_DEV_", "BUGLESS_IMPORT_", "BUGLESS_TEST_")
_CLIENT_SETTINGS = frozenset(
    {"BUGLESS_API", "BUGLESS_CERT", "BUGLESS_KEY", "BUGLESS_CA", "BUGLESS_TIME_ZONE",
     "BUGLESS_CLIENT_CONFIG", "BUGLESS_LOG_LEVEL"}
)  # fmt: skip


def ignored_service_settings(environ: Mapping[str, str]) -> list[str]:
    """The services' ``BUGLESS_*`` settings in ``environ``, which the stack does not pass on.

    The services get only the stack's own settings (:func:`clean_environment`),
    so that a shell's leftovers cannot change them; a person who exported
    ``BUGLESS_BLOB_STORE=s3`` to try the S3 store would otherwise believe it
    in use.
    """
    return sorted(
        key
        for key in environ
        if key.startswith("BUGLESS_")
        and not key.startswith(_NOT_SERVICE_SETTINGS)
        and key not in _CLIENT_SETTINGS
    )


def _echo(text: str) -> None:
    click.echo(text)


async def _run(settings: DevSettings, stack: DevStack, web_port: int, api_port: int) -> int:
    """Run until a signal (exit 0) or a failure (exit 1 or 2); always stop everything."""
    loop = asyncio.get_running_loop()
    body = asyncio.create_task(_serve(settings, stack, web_port, api_port))
    signals: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig)
        if len(signals) == 1:
            click.echo(f"\n{sig.name}: stopping (again to kill at once)…")
            body.cancel()
        else:
            stack.kill()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await body
    except asyncio.CancelledError:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(settings: DevSettings, stack: DevStack, web_port: int, api_port: int) -> int:
    state = stack.state
    click.echo(
        f"bugless dev: state in {state.path}"
        + (" (new)" if state.created else "")
        + f"; logs in {state.logs_dir}"
    )
    try:
        running = await stack.start(web_port, api_port)
        if settings.demo:
            from bugless_dev._demo import seed_demo  # noqa: PLC0415

            try:
                await seed_demo(running, stack.state, _echo)
            except BuglessError as exc:
                raise ServiceFailed(f"seeding the demo data failed: {exc.message}") from exc
        await stack.start_notifier(running)
        _print_ready(running)
        name, child = await stack.wait_for_unexpected_exit()
        click.secho(
            f"error: {name} exited with {child.process.returncode}; stopping everything",
            fg="red",
            err=True,
        )
        click.echo(child.failure("exited").args[0], err=True)
        return EXIT_ERROR
    except StateDirError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return EXIT_USAGE
    except (ServiceFailed, PostgresUnavailable, OSError) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return EXIT_ERROR
    except BuglessError as exc:  # a service answered a set-up call with an error
        click.secho(f"error: {exc.message}", fg="red", err=True)
        return EXIT_ERROR
    finally:
        await stack.stop()
        click.echo(f"bugless dev: stopped; the data stays in {state.path}")


def _bugless_program() -> str:
    """How to call this install's ``bugless`` from a shell: the name if PATH finds it.

    ``python3 -m venv .venv && .venv/bin/pip install … && .venv/bin/bugless dev``
    leaves the venv unactivated; printing ``bugless issue list`` would then
    run nothing, or another install's ``bugless``.
    """
    here = Path(sys.executable).parent / "bugless"
    found = shutil.which("bugless")
    if not here.exists() or (found is not None and Path(found).resolve() == here.resolve()):
        return "bugless"
    return shlex.quote(str(here))


def _set_password(username: str) -> str:
    """The command that replaces ``username``'s password in the running dev database."""
    return (
        f"{_bugless_program()} auth user set-password {username} "
        '--database-url "$BUGLESS_DEV_DATABASE_URL"'
    )


def _print_import(running: Running, bugless: str) -> None:
    """How to run ``bugless import`` into this stack: its services, the import certificate."""
    exports = {
        "BUGLESS_IMPORT_MODEL": running.model.authority,
        "BUGLESS_IMPORT_AUTH": running.auth.authority,
    }
    if running.model.ca is not None:  # not --insecure-local
        exports |= {
            "BUGLESS_IMPORT_TLS_CA": str(running.ca),
            "BUGLESS_IMPORT_TLS_CERT": str(running.importer.cert),
            "BUGLESS_IMPORT_TLS_KEY": str(running.importer.key),
        }
    installed = importlib.util.find_spec("bugless_import") is not None
    needs = "" if installed else " (install bugless-import first)"
    click.echo(
        f"Import another tracker{needs} as `{running.admin.username}` "
        "(its password is asked for) — paste into a shell:"
    )
    click.echo("    export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))
    click.echo(
        f"    {bugless} import trac /path/to/trac-environment --user {running.admin.username} "
        "--dry-run"
    )


def _print_operations(running: Running) -> None:
    """Where each service's Prometheus metrics are, and how to ask for health."""
    scraped = [(s.kind, s.metrics_port) for s in running.stack.services if s.metrics_port]
    if not scraped:
        return
    click.echo("Metrics (Prometheus), one page a service:")
    for kind, port in scraped:
        click.echo(f"    {kind:<7} http://127.0.0.1:{port}/metrics")
    click.echo(
        f"Health: {running.web_url}/healthz and /readyz; the gRPC services answer "
        "grpc.health.v1.Health/Check (grpcurl, with the certificates above)"
    )
    click.echo("")


def _print_ready(running: Running) -> None:
    """What a person needs, once everything answers; the URL line comes last."""
    admin = running.admin
    for note in running.notes:
        click.echo(f"note: {note}")
    click.echo("")
    if admin.password is not None:
        click.secho(
            f"Created the administrator `{admin.username}`. Password (shown once):", bold=True
        )
        click.echo(f"    {admin.password}")
        click.echo(f"  It is stored hashed only; to change it: {_set_password(admin.username)}")
    else:
        click.echo(
            f"The administrator `{admin.username}` exists (its password was shown when it was "
            "created). Lost it? With the Database line below exported, in another shell: "
            f"{_set_password(admin.username)} (prints a new one; the data stays)."
        )
    exports = {
        "BUGLESS_API": running.api,
        "BUGLESS_CERT": str(running.bot.cert),
        "BUGLESS_KEY": str(running.bot.key),
        "BUGLESS_CA": str(running.ca),
    }
    export_line = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
    click.echo("")
    click.echo("API (gRPC, mutual TLS) as the bot `dev-bot` — paste into a shell:")
    click.echo(f"    {export_line}")
    bugless = _bugless_program()
    click.echo(f'    {bugless} issue list "is:open"')
    click.echo(f'    {bugless} issue create --title "It crashes" --component General')
    click.echo("  grpcurl (reflection is on):")
    click.echo(
        f"    grpcurl -cacert {shlex.quote(str(running.ca))} "
        f"-cert {shlex.quote(str(running.bot.cert))} -key {shlex.quote(str(running.bot.key))} "
        f"{running.api} bugless.v1.Account/WhoAmI"
    )
    # The development CA is also the people CA: anyone signed in to the web UI
    # gets a certificate of their own, and the API and CA given here are kept
    # with it, so later commands need no exports.
    click.echo("  as yourself (approve it in the web UI, signed in):")
    click.echo(
        f"    {bugless} login --web {running.web_url} --api {running.api} "
        f"--ca {shlex.quote(str(running.ca))}"
    )
    click.echo("")
    _print_import(running, bugless)
    click.echo("")
    _print_operations(running)
    click.echo(
        f"Database (superuser): export BUGLESS_DEV_DATABASE_URL={shlex.quote(running.database_url)}"
    )
    click.echo("")
    click.secho(f"Web UI (sign in as `{admin.username}`): {running.web_url}", bold=True)
    if running.mail_url:
        click.echo(f"Mail the notifier sent (caught locally, never sent on): {running.mail_url}")
    else:
        click.echo(
            f"Mail the notifier sends goes to the SMTP relay {running.mail_relay} "
            "(--smtp-relay; /dev/mail is off)"
        )
    click.echo("Press Ctrl-C to stop.")


__all__ = ["dev_command"]
