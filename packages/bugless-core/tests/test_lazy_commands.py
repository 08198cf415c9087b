"""Commands added by reference: listed without being imported, and listed as if they were.

``bugless issue show`` (run many times by a bot's script) assembles the whole
command tree first; every plugin's command module it imported was paid for
on each run. These tests pin what :class:`bugless_core.cli.CommandGroup`
promises: ``--help`` lists a lazy command by the summary it was added with,
byte for byte as it would list the imported command, and imports nothing.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bugless_core.cli import CommandGroup, build_cli
from bugless_core.plugins import load_plugins

FIXTURE_MODULE = "bugless_fixture_lazy_commands"

#: Docstrings click shortens in different ways: a first sentence, a long one cut
#: at the column, one without a full stop, a paragraph break, an explicit short help.
COMMANDS = '''
import click


@click.command("short")
def short_command():
    """Say one thing. And then another the list leaves out."""


@click.command("long-winded-name")
def long_command():
    """A first sentence long enough that the listing must cut it at the column, with more.

    A second paragraph.
    """


@click.group("plain")
def plain_group():
    """No full stop here

    so the first paragraph is the whole summary."""


@click.command("brief", short_help="Given explicitly.")
def brief_command():
    """Not what the listing shows."""
'''

NAMES = {
    "short": "short_command",
    "long-winded-name": "long_command",
    "plain": "plain_group",
    "brief": "brief_command",
}


@pytest.fixture
def command_module(tmp_path: Path) -> Iterator[str]:
    """A module of commands on ``sys.path``, not yet imported; forgotten afterwards."""
    (tmp_path / f"{FIXTURE_MODULE}.py").write_text(textwrap.dedent(COMMANDS))
    sys.path.insert(0, str(tmp_path))
    try:
        yield FIXTURE_MODULE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(FIXTURE_MODULE, None)


def _group() -> CommandGroup:
    @click.group("root", cls=CommandGroup)
    def root() -> None:
        """A group."""

    assert isinstance(root, CommandGroup)
    return root


def _help(group: click.Group, *args: str) -> str:
    result = CliRunner().invoke(group, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _summary(module: str, attribute: str) -> str:
    """What a plugin passes: the command's short help, uncut."""
    command = getattr(__import__(module), attribute)
    assert isinstance(command, click.Command)
    return command.get_short_help_str(limit=10_000)


def test_help_lists_a_lazy_command_by_its_summary_without_importing_it(
    command_module: str,
) -> None:
    summaries = {name: _summary(command_module, attr) for name, attr in NAMES.items()}
    sys.modules.pop(command_module)
    lazy = _group()
    for name, attribute in NAMES.items():
        lazy.add_lazy_command(name, f"{command_module}:{attribute}", summaries[name])

    listed = _help(lazy)

    assert command_module not in sys.modules
    eager = _group()
    module = __import__(command_module)
    for name, attribute in NAMES.items():
        eager.add_command(getattr(module, attribute), name)
    assert listed == _help(eager)
    assert "Say one thing." in listed
    assert "And then" not in listed
    assert "Given explicitly." in listed


def _completions(group: click.Group, incomplete: str) -> list[tuple[str, str | None]]:
    ctx = click.Context(group, info_name="root", resilient_parsing=True)
    return [(item.value, item.help) for item in group.shell_complete(ctx, incomplete)]


def test_completion_offers_a_lazy_command_by_its_summary_without_importing_it(
    command_module: str,
) -> None:
    summaries = {name: _summary(command_module, attr) for name, attr in NAMES.items()}
    sys.modules.pop(command_module)
    lazy = _group()
    for name, attribute in NAMES.items():
        lazy.add_lazy_command(name, f"{command_module}:{attribute}", summaries[name])

    offered = {prefix: _completions(lazy, prefix) for prefix in ("", "lo", "-")}

    assert command_module not in sys.modules
    assert [value for value, _ in offered["lo"]] == ["long-winded-name"]
    eager = _group()
    module = __import__(command_module)
    for name, attribute in NAMES.items():
        eager.add_command(getattr(module, attribute), name)
    assert offered == {prefix: _completions(eager, prefix) for prefix in offered}


def test_a_lazy_command_runs_and_shows_its_own_help_from_its_module(
    command_module: str,
) -> None:
    group = _group()
    group.add_lazy_command("plain", f"{command_module}:plain_group", "No full stop here")
    shown = _help(group, "plain")
    assert command_module in sys.modules
    assert "so the first paragraph is the whole summary." in shown
    assert "plain" not in group.lazy_commands


def test_a_lazy_command_without_a_summary_is_imported_to_be_listed(
    command_module: str,
) -> None:
    group = _group()
    group.add_lazy_command("short", f"{command_module}:short_command")
    assert "Say one thing." in _help(group)
    assert command_module in sys.modules


def test_every_installed_lazy_command_is_listed_as_its_command_would_be() -> None:
    """The summaries plugins pass (by hand) still match the commands' docstrings.

    The root's ``--help`` as assembled (nothing imported) against the same
    root once every lazy command is imported: a docstring changed without its
    plugin's summary fails here, naming the difference.
    """
    cli = build_cli(load_plugins())
    lazy = {name: entry.summary for name, entry in cli.lazy_commands.items()}
    assert "model" in lazy
    assert all(summary is not None for summary in lazy.values()), lazy
    listed = _help(cli)
    ctx = click.Context(cli, info_name="bugless")
    for name in lazy:
        assert cli.get_command(ctx, name) is not None, name
    assert not cli.lazy_commands
    assert listed == _help(cli)
    _check_listed_as_imported(cli, [])


def _check_listed_as_imported(group: CommandGroup, path: list[str]) -> None:
    """The same check for every group below the root whose commands are lazy (auth, issue...)."""
    ctx = click.Context(group, info_name=path[-1] if path else "bugless")
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if not isinstance(sub, CommandGroup) or not sub.lazy_commands:
            continue
        unsummarized = [lazy for lazy, entry in sub.lazy_commands.items() if entry.summary is None]
        assert unsummarized == [], [*path, name]  # its --help would import them to list them
        root = build_cli(load_plugins())
        listed = _help(root, *path, name)
        sub_ctx = click.Context(sub, info_name=name)
        for lazy in list(sub.lazy_commands):
            assert sub.get_command(sub_ctx, lazy) is not None, [*path, name, lazy]
        assert listed == _help(root, *path, name), [*path, name]
        _check_listed_as_imported(sub, [*path, name])
