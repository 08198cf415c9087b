"""Queries that start with ``-`` are arguments, not unknown options (bugless_core.query_arguments).

``bugless query explain`` runs as a subprocess, as a person types it; the
rules about option values and known short options are checked on a command
with both kinds of option, through click's own runner.
"""

from __future__ import annotations

import subprocess

import click
import pytest
from click.testing import CliRunner

from bugless_core.query_arguments import QueryCommand
from bugless_dev.processes import BUGLESS_COMMAND


def test_query_explain_takes_a_query_that_starts_with_a_negation() -> None:
    result = subprocess.run(
        [*BUGLESS_COMMAND, "query", "explain", "-assignee:none is:open", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"negate"' in result.stdout
    # A negated word starting with the letter of -h, its help option.
    word = subprocess.run(
        [*BUGLESS_COMMAND, "query", "explain", "-hotfix", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert word.returncode == 0, word.stderr
    assert '"negate"' in word.stdout
    assert "hotfix" in word.stdout
    bad = subprocess.run(
        [*BUGLESS_COMMAND, "query", "explain", "-asignee:none"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Read as a query, so the error is the query's, with its caret.
    assert bad.returncode == 2
    assert "unknown field 'asignee'; did you mean 'assignee'?" in bad.stderr
    assert "No such option" not in bad.stderr


@click.command(cls=QueryCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.argument("query", default="")
@click.option("--limit", "-l", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
def _sample(name: str, query: str, limit: int | None, as_json: bool) -> None:
    click.echo(f"{name}|{query}|{limit}|{as_json}")


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["n", "-a:none"], "n|-a:none|None|False"),
        (["n", "-a:none", "--limit", "3"], "n|-a:none|3|False"),
        (["--json", "n", "-bug", "-l", "2"], "n|-bug|2|True"),
        (["n", "--limit", "-1", "-(a OR b)"], "n|-(a OR b)|-1|False"),
        (["n", "-has:attachment"], "n|-has:attachment|None|False"),
        (["n", "--", "-x"], "n|-x|None|False"),
        (["n", "is:open"], "n|is:open|None|False"),
        # A negated word whose first letter is a flag's short option (-h):
        # its other letters are no flags, so it is no cluster of them.
        (["n", "-hotfix"], "n|-hotfix|None|False"),
        (["n", "-hotfix", "--json"], "n|-hotfix|None|True"),
    ],
)
def test_an_argument_starting_with_a_dash_is_a_query_unless_it_is_an_option(
    args: list[str], printed: str
) -> None:
    result = CliRunner().invoke(_sample, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == printed


def test_known_short_options_and_help_stay_options() -> None:
    assert "Usage:" in CliRunner().invoke(_sample, ["n", "-h"]).output
    assert "Usage:" in CliRunner().invoke(_sample, ["n", "-hh"]).output
    assert CliRunner().invoke(_sample, ["n", "-l5"]).output.strip() == "n||5|False"
    # A value-taking short option takes the rest of the argument, as click reads it.
    assert CliRunner().invoke(_sample, ["n", "-lfoo"]).exit_code == 2
