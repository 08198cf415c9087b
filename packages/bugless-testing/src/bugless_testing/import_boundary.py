"""What a ``bugless <service> serve`` process has imported before it serves.

Every bugless process loads every installed plugin and assembles the whole
``bugless`` command tree, so a plugin that imports its service's code while
registering makes every other service pay for it, in memory and start-up
time. :func:`modules_of_service` runs what the console script runs up to the
serve command's body, plus the modules that body imports, in a fresh
interpreter, and returns ``sys.modules``: a test then names what must not be
there (the Model's database driver in the web tier, say).
:func:`modules_after_command` does the same for a whole command run (a
``--help``, a client command), for the tests that keep start-up light.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence

#: Modules only the Model or the Authenticator use: no frontend may import them.
BACKEND_ONLY_MODULES = (
    "asyncpg",
    "argon2",
    "bugless_model_postgres.backend",
    "bugless_model_postgres.blobs",
    "bugless_model_cockroach.backend",
    "bugless_auth.store",
    "bugless_auth.local",
    "bugless_core.model.servicer",
    "bugless_import.runner",
    "bugless_dev.stack",
)

_SCRIPT = """
import importlib, json, sys
import click
from bugless_core.cli import build_cli
from bugless_core.plugins import load_plugins

path, body = json.loads(sys.argv[1])
command = build_cli(load_plugins())
ctx = click.Context(command)
for name in path:
    command = command.get_command(ctx, name)
    assert command is not None, name
for module in body:
    importlib.import_module(module)
print(json.dumps(sorted(sys.modules)))
"""


def modules_of_service(command: Sequence[str], serve_imports: Sequence[str]) -> set[str]:
    """Modules imported after resolving ``bugless <command>`` and importing ``serve_imports``.

    Args:
        command: The command path, e.g. ``["web", "serve"]``.
        serve_imports: What the command's body imports before serving
            (``bugless_web.server``): the part click does not show.
    """
    argument = json.dumps([list(command), list(serve_imports)])
    output = subprocess.run(
        [sys.executable, "-c", _SCRIPT, argument],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(json.loads(output))


#: Runs ``bugless ARGV`` in-process, then prints the loaded modules as JSON on stderr.
_COMMAND_PROBE = """
import json, sys
from bugless_core.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after_command(
    *argv: str, env: Mapping[str, str] | None = None
) -> tuple[set[str], str, str]:
    """The modules a fresh interpreter has loaded after ``bugless ARGV``, its stdout and stderr.

    A command that fails (click's usage error, exit 2) is run all the same:
    its message is in the stderr returned (before the modules' line).

    Args:
        argv: The command line after ``bugless``.
        env: The process's environment (default: this one's), e.g. shell
            completion's variables.
    """
    result = subprocess.run(
        [sys.executable, "-c", _COMMAND_PROBE, *argv],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=True,
    )
    *before, last = result.stderr.strip().splitlines()
    loaded = json.loads(last)
    assert isinstance(loaded, list)
    return set(loaded), result.stdout, "\n".join(before)


def loaded_among(loaded: set[str], names: Sequence[str]) -> list[str]:
    """Those of ``names`` in ``loaded``, themselves or a submodule of theirs, sorted."""
    return sorted(n for n in names if n in loaded or any(m.startswith(f"{n}.") for m in loaded))
