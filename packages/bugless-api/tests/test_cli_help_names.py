"""What ``--help`` calls an option's value: a version or an entry number is N, not ID.

Before, ``bugless issue redact --help`` read ``--entry ID  The comment
#ENTRY`` and every ``--expected-version`` took an ``ID``, while the README
writes ``--expected-version N``.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from bugless_core.cli import build_cli
from bugless_core.plugins import load_plugins

NUMBERS = {"--expected-version", "--entry"}


def _commands(
    group: click.Group, ctx: click.Context, path: str = ""
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _commands(command, ctx, f"{path}{name} ")
        elif command is not None:
            yield f"{path}{name}", command


def test_versions_and_entries_are_numbers_in_every_help() -> None:
    root = build_cli(load_plugins())
    ctx = click.Context(root)
    shown: dict[str, str] = {}
    for path, command in _commands(root, ctx):
        for option in command.params:
            if isinstance(option, click.Option) and NUMBERS & set(option.opts):
                record = option.get_help_record(click.Context(command))
                assert record is not None
                shown[f"{path} {option.opts[0]}"] = record[0]
    assert len(shown) >= 10, shown
    assert {help_name.split()[-1] for help_name in shown.values()} == {"N"}, shown


def test_no_help_shows_docstring_markup() -> None:
    """``--help`` prints a command's docstring as written: reST's double backquotes show.

    ``bugless issue edit-comment --help`` read "(``bugless issue history``)".
    """
    root = build_cli(load_plugins())
    ctx = click.Context(root)
    marked = {
        path: text
        for path, command in _commands(root, ctx)
        for text in [command.get_help(click.Context(command, info_name=path))]
        if "``" in text
    }
    assert marked == {}
