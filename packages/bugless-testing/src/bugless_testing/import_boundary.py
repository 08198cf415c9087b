"""What a ``bugless <service> serve`` process has imported before it serves.

Every bugless process loads every installed plugin and assembles the whole
``bugless`` command tree, so a plugin that imports its service's code while
registering makes every other service pay for it, in memory and start-up
time. :func:`modules_of_service` runs what the console script runs up to the
serve command's body, plus the modules that body imports, in a fresh
interpreter, and returns ``sys.modules``: a test then names what must not be
there (the Model's database driver in the web tier, say).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

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
