"""``bugless import <source> <location>``: the command line of a run."""

from __future__ import annotations

import dataclasses
import sys

import click

from bugless_core.cli import EXIT_ERROR, EXIT_USAGE, fail
from bugless_core.errors import BuglessError
from bugless_core.eventloop import run
from bugless_core.plugins import Plugins
from bugless_core.registry import UnknownBackendError
from bugless_core.settings import settings_command
from bugless_import.progress import default_progress_stream
from bugless_import.restricted import RestrictedComponentRefused
from bugless_import.runner import run_import
from bugless_import.settings import ImportSettings
from bugless_import.write_issues import REFUSED_ISSUE

#: Exit status of a run stopped by Ctrl-C (the shell's convention for SIGINT).
EXIT_INTERRUPTED = 130


def _password_of(user: str) -> str:
    """``--user``'s password: asked for on a terminal, else standard input's first line."""
    if sys.stdin.isatty():
        return str(click.prompt(f"Password of {user}", hide_input=True, err=True))
    return sys.stdin.readline().rstrip("\r\n")


@click.command("import")
@click.argument("source")
@click.argument("location")
@click.pass_obj
@settings_command(ImportSettings, env_prefix="BUGLESS_IMPORT_")
def import_command(
    plugins: Plugins, settings: ImportSettings, *, source: str, location: str
) -> None:
    """Import the issues of another tracker with their whole history.

    SOURCE is an installed importer (github, jira, trac, redmine, roundup, or
    a plugin's); LOCATION is where it reads: a directory of exported JSON, a
    Trac environment, a tracker's URL. Run with --dry-run first: it lists
    what is unmapped and whom and what would be created. Interrupted (Ctrl-C),
    the same command resumes where it stopped.
    """
    if settings.user and not settings.token and settings.model and settings.auth:
        settings = dataclasses.replace(settings, password=_password_of(settings.user))
    try:
        importer_class = plugins.importers.get(source)
    except UnknownBackendError as exc:  # bad usage (2), as `--model` naming no backend
        raise click.BadParameter(exc.message, param_hint="SOURCE") from exc
    importer = importer_class(location, dict(settings.options))
    try:
        report = run(run_import(importer, settings, progress=default_progress_stream()))
    except RestrictedComponentRefused as exc:
        # Configuration, like a bad flag: nothing was written (exit 2).
        fail(exc.message, EXIT_USAGE)
    except BuglessError as exc:
        if REFUSED_ISSUE not in exc.metadata:
            raise  # the root command's statuses: a source answering 404 is 3, ...
        # The Model refused one issue: a service refusing the request (1),
        # whatever the refusal's kind. Its NotFound (a hotlist deleted while
        # the run went on) is no source answering 404 (3), its AlreadyExists
        # no conflict of the run's (4). What landed before it is kept.
        fail(
            f"{exc.message}\nstopped at {exc.metadata[REFUSED_ISSUE]}: what was imported is "
            f"kept in {settings.state_dir}; run the same command again once it is fixed",
            EXIT_ERROR,
        )
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: what was imported is kept in {settings.state_dir}; "
            "run the same command again to import the rest",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    click.echo(report.render())
    if not settings.dry_run:
        csv_too = " and redirects CSV" if settings.new_url else ""
        click.echo(f"report{csv_too}: {settings.state_dir}")
