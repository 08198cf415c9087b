"""docs/cli.md gives each command's summary as one line of prose, as ``--help`` shows it.

click keeps a command's docstring as written, the lines after the first
indented as in the source; the reference joined a summary's lines without
removing that indentation, so a summary wrapped over two lines read
"Serve the API     until SIGTERM." in the page.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import click

ROOT = Path(__file__).resolve().parents[2]


def _cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "scripts/cli_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@click.command()
def wrapped() -> None:
    """Serve the bugless.v1 public API over mutual TLS
    until SIGTERM, draining first.

    The rest of the help, which the reference leaves to ``--help``.
    \f
    For the code's readers only.
    """


@click.command()
def one_paragraph() -> None:
    """Print a new key.\f

    Not shown.
    """


def test_a_summary_wrapped_over_lines_is_one_line_without_the_indentation() -> None:
    reference = _cli_reference()
    assert reference.summary(wrapped) == (
        "Serve the bugless.v1 public API over mutual TLS until SIGTERM, draining first."
    )
    assert reference.summary(one_paragraph) == "Print a new key."
    assert reference.summary(click.Command("bare")) == ""


def test_the_rendered_reference_has_no_summary_with_source_indentation() -> None:
    """Every command's summary line in the page, as the installed packages render it."""
    page = _cli_reference().render()
    lines = page.splitlines()
    summaries = [
        lines[i + 2]
        for i, line in enumerate(lines[:-2])
        if line.startswith("## `bugless ") and lines[i + 2] and not lines[i + 2].startswith("|")
    ]
    assert len(summaries) > 50, "the page's commands were not read"
    assert [s for s in summaries if "  " in s or s != s.strip()] == []
