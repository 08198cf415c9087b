"""``bugless --help`` lists every exit status a command ends with, and what it means.

Before, only the module's docstring listed them, as "1 a bugless error
reported by a service", while a ``serve`` process also exits 1 when a second
SIGTERM/SIGINT cut work still running (:data:`EXIT_CUT_AT_SIGNAL`), and the
client commands exit 3 and 4 and ``issue watch`` and ``import`` 130. The
table is read from the real command's help, as a supervisor's operator
would; every status a package's code names must be in it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from bugless_api.cli._common import EXIT_OK
from bugless_core.cli import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_STATUSES,
    EXIT_USAGE,
    exit_status_of,
    start_exit_status,
)
from bugless_core.errors import (
    AlreadyExists,
    Conflict,
    ContentGone,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from bugless_core.exit_status import EXIT_CUT_AT_SIGNAL
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_import.command import EXIT_INTERRUPTED

#: The conftest's ``installed_plugin``: installs a distribution with a ``bugless`` entry point.
PluginFactory = Callable[..., Path]


def _listed() -> dict[int, str]:
    """The exit statuses ``bugless --help`` lists: status -> meaning, its lines joined."""
    shown = subprocess.run(
        [*BUGLESS_COMMAND, "--help"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    table = shown.split("Exit statuses:\n", 1)[1]
    listed: dict[int, str] = {}
    status = None
    for line in table.splitlines():
        row = re.match(r"\s+(\d+)  (.*)", line)
        if row is not None:
            status = int(row.group(1))
            listed[status] = row.group(2)
        elif status is not None and line.strip():
            listed[status] += " " + line.strip()
    return listed


def test_help_lists_every_exit_status_the_commands_use() -> None:
    listed = _listed()
    assert listed == dict(EXIT_STATUSES)
    used = {
        EXIT_OK,
        EXIT_ERROR,
        EXIT_USAGE,
        EXIT_CUT_AT_SIGNAL,
        EXIT_NOT_FOUND,
        EXIT_CONFLICT,
        EXIT_INTERRUPTED,
    }
    assert set(listed) == used
    # A serve process cut at its second signal: what a supervisor reads as not clean.
    assert "serve process whose second SIGTERM/SIGINT cut calls" in listed[EXIT_CUT_AT_SIGNAL]
    assert "not found" in listed[EXIT_NOT_FOUND]
    assert "conflict" in listed[EXIT_CONFLICT]


def test_query_explain_exits_2_on_a_query_that_does_not_parse() -> None:
    """A query that does not parse is bad usage, as for the client commands (2, not 1).

    Before, ``bugless query explain`` exited 1 (the status of a failed service)
    for the same text ``bugless issue list --query`` rejects with 2.
    """
    results = [
        subprocess.run(
            [*BUGLESS_COMMAND, "query", "explain", "status:", *extra],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        for extra in ([], ["--json"])
    ]
    assert [result.returncode for result in results] == [EXIT_USAGE, EXIT_USAGE]
    # The caret and the message on stderr; --json prints where it is wrong on stdout.
    assert "^" in results[0].stderr
    assert "expected a value after 'status:'" in results[0].stderr
    assert '"position": 7' in results[1].stdout
    assert "query explain" in dict(EXIT_STATUSES)[EXIT_USAGE]
    assert "query explain" not in dict(EXIT_STATUSES)[EXIT_ERROR]


def test_a_refused_value_is_bad_usage_unless_a_service_answered_it() -> None:
    """One rule for the commands that check their input and the client commands.

    ``bugless auth user`` refuses its own arguments: every InvalidArgument is 2.
    A client command's InvalidArgument is 2 only when the client raised it of
    the command's input (origin "client"); one the API answered is the service
    refusing the request, 1. The other statuses are the same for both.
    """
    by_service = InvalidArgument("title: too long")
    by_client = InvalidArgument("--api: no port", metadata={"origin": "client"})
    assert [exit_status_of(by_service), exit_status_of(by_client)] == [EXIT_USAGE, EXIT_USAGE]
    assert [
        exit_status_of(by_service, answered_by_service=True),
        exit_status_of(by_client, answered_by_service=True),
    ] == [EXIT_ERROR, EXIT_USAGE]
    for answered_by_service in (False, True):
        statuses = [
            exit_status_of(error, answered_by_service=answered_by_service)
            for error in (
                NotFound("issue 7 not found"),
                ContentGone("attachment 3 was deleted"),
                AlreadyExists("username 'dana' is taken"),
                Conflict("stale version"),
                Unavailable("the Model is away"),
            )
        ]
        assert statuses == [
            EXIT_NOT_FOUND,
            EXIT_NOT_FOUND,
            EXIT_CONFLICT,
            EXIT_CONFLICT,
            EXIT_ERROR,
        ]


#: A Model backend whose start fails as its name says: ``migrate`` with a
#: Conflict, ``open`` with a NotFound or an InvalidArgument.
FAILING_BACKEND = """
from bugless_core import hookimpl
from bugless_core.errors import Conflict, InvalidArgument, NotFound
from bugless_core.model.backend import ModelBackend


class NotFoundAtOpen(ModelBackend):
    name = "not-found-at-open"

    @classmethod
    async def open(cls, settings):
        raise NotFound("schema 'gone': no such schema in the database")


class ConflictAtMigrate(ModelBackend):
    name = "conflict-at-migrate"

    @classmethod
    async def migrate(cls, settings):
        raise Conflict("another replica holds the migration lock")


class RefusedAtOpen(ModelBackend):
    name = "refused-at-open"

    @classmethod
    async def open(cls, settings):
        raise InvalidArgument("locality: no region 'mars' in the database")


@hookimpl
def bugless_register_model_backends(register):
    register(NotFoundAtOpen)
    register(ConflictAtMigrate)
    register(RefusedAtOpen)
"""


def _model_command(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [*BUGLESS_COMMAND, "model", *args, "--database-url", "postgresql://127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_serve_and_migrate_exit_1_or_2_whatever_stops_their_start(
    installed_plugin: PluginFactory,
) -> None:
    """A failed start is 1 and a setting refused 2, as the table says; never 3 or 4.

    Before, ``model serve`` and ``migrate`` (and ``auth``'s) ended with
    :func:`exit_status_of`'s status, so a NotFound met while starting exited
    3 and a Conflict 4, statuses the table gives client commands, ``auth
    user`` and import only. The backend is a real plugin of a real
    ``bugless`` process, read as a supervisor reads it.
    """
    site = installed_plugin("bugless-fixture-failing", "bugless_fixture_failing", FAILING_BACKEND)
    serve = ("serve", "--insecure-local", "--port", "0", "--page-token-secret", "s" * 16)
    not_found = _model_command(site, *serve, "--model", "not-found-at-open")
    assert (not_found.returncode, not_found.stderr.strip().splitlines()[-1]) == (
        EXIT_ERROR,
        "error: schema 'gone': no such schema in the database",
    )
    conflict = _model_command(site, *serve, "--model", "conflict-at-migrate", "--migrate")
    assert (conflict.returncode, conflict.stderr.strip().splitlines()[-1]) == (
        EXIT_ERROR,
        "error: another replica holds the migration lock",
    )
    migrate = _model_command(site, "migrate", "--model", "conflict-at-migrate")
    assert (migrate.returncode, migrate.stderr.strip().splitlines()[-1]) == (
        EXIT_ERROR,
        "error: another replica holds the migration lock",
    )
    refused = _model_command(site, *serve, "--model", "refused-at-open")
    assert (refused.returncode, refused.stderr.strip().splitlines()[-1]) == (
        EXIT_USAGE,
        "error: locality: no region 'mars' in the database",
    )
    assert [
        start_exit_status(error)
        for error in (
            NotFound("a"),
            ContentGone("b"),
            AlreadyExists("c"),
            Conflict("d"),
            Unavailable("e"),
            InvalidArgument("f"),
        )
    ] == [EXIT_ERROR, EXIT_ERROR, EXIT_ERROR, EXIT_ERROR, EXIT_ERROR, EXIT_USAGE]


#: A package's commands that let a bugless error escape to the root command,
#: as ``bugless web serve``, ``api serve`` and ``notify serve`` do.
ESCAPING_COMMANDS = """
import click

from bugless_core import hookimpl
from bugless_core.errors import Conflict, InvalidArgument, NotFound


@click.group("fixture-service")
def group():
    "A service of a test plugin."


@group.command("serve")
@click.option("--refuse", is_flag=True)
def serve(refuse):
    "Start, and fail to."
    if refuse:
        raise InvalidArgument("--listen: not host:port")
    raise NotFound("the queue 'mail' does not exist")


@group.command("migrate")
def migrate():
    "Migrate, and fail to."
    raise Conflict("another replica is migrating")


@group.command("show")
def show():
    "Show a thing that is not there."
    raise NotFound("thing 7 not found")


@hookimpl
def bugless_register_commands(cli):
    cli.add_command(group)
"""


def test_a_serve_that_lets_its_error_escape_exits_as_a_failed_start(
    installed_plugin: PluginFactory,
) -> None:
    """The root command's handler knows a ``serve`` or ``migrate`` by its name.

    ``web serve``, ``api serve`` and ``notify serve`` let a bugless error
    reach the root command, whose handler read it as a service's answer: a
    NotFound exited 3, a Conflict 4 and an InvalidArgument (bad configuration)
    1. Any package's ``serve`` and ``migrate`` now exit as a failed start.
    """
    site = installed_plugin(
        "bugless-fixture-escaping", "bugless_fixture_escaping", ESCAPING_COMMANDS
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )

    def run(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [*BUGLESS_COMMAND, "fixture-service", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stderr.strip().splitlines()[-1]

    assert run("serve") == (EXIT_ERROR, "error: the queue 'mail' does not exist")
    assert run("serve", "--refuse") == (EXIT_USAGE, "error: --listen: not host:port")
    assert run("migrate") == (EXIT_ERROR, "error: another replica is migrating")
    # Any other command keeps the table's statuses for what it was asked about.
    assert run("show") == (EXIT_NOT_FOUND, "error: thing 7 not found")
