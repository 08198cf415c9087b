"""Hostile or odd text converts in bounded time: no pattern rescans a run of ``[`` or ``{``.

A source's comment may be 64 KiB. Before, each ``[`` of ``[[[...`` (and of
``[a|``, ``[~``, ``[](``, ``[[A(``..., each ``{`` of ``{{{...``) scanned to
the end of its line or of the text, so one such comment took from seconds to
minutes (``trac_to_markdown("[" * 50000)``: 28 s) and stalled the import.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

from bugless_import.sources.github import linked_file_pattern
from bugless_import.sources.markup import cite_source_issues, jira_to_markdown, trac_to_markdown

#: A source's largest comment.
SIZE = 64 * 1024
#: Generous: each conversion here takes milliseconds (at most ~40 ms of CPU
#: measured); before, seconds to minutes. CPU time, so a loaded machine does
#: not trip it.
HANG_SECONDS = 2


class Hung(Exception):
    """The conversion ran past :data:`HANG_SECONDS`."""


@contextmanager
def hang_detector() -> Iterator[None]:
    """Fail what runs past :data:`HANG_SECONDS` instead of waiting minutes for it.

    A hang detector, not a timing: house rule is no timings in tests (a
    loaded machine would make one flaky), and Python's ``re`` exposes no step
    count to compare for n and 2n characters. The bound is on the process's
    CPU time (``ITIMER_PROF``), so waiting for a busy machine does not count;
    it is ~50 times what the linear code takes, and below what the quadratic
    code took.
    """

    def expired(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise Hung(f"conversion still running after {HANG_SECONDS} s of CPU")

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def hostile(unit: str) -> str:
    """``unit`` repeated to a 64 KiB comment, all on one line."""
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def trac(text: str) -> str:
    return trac_to_markdown(text, "https://trac.example.org", {"WikiStart"})


def cite(text: str) -> str:
    return cite_source_issues(text, lambda number: f"/imported?id=trac:{number}")


#: What each converter must still convert before the hostile run.
ORDINARY: dict[str, tuple[Callable[[str], str], str, str]] = {
    "trac": (trac, "'''bold''' [ticket:3 three] {{{code}}}", "**bold** three (#3) `code`"),
    "jira": (
        jira_to_markdown,
        "*bold* [a|http://x.org] {{mono}}",
        "**bold** [a](http://x.org) `mono`",
    ),
    "cite": (
        cite,
        "see #12 [a](http://x.org)",
        "see [#12](/imported?id=trac:12) [a](http://x.org)",
    ),
}
UNITS = [
    "[", "[[", "![", "{", "{{", "{code:a}", "[a|", "[~", "[](", "[a](", "[[A(", "[1/", "<a:",
    "-a", "[http:x ", "[ticket:1 ", "[wiki:a ", "[WikiStart ", "!", "*", "_", "`", "'",
]  # fmt: skip


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("converter", sorted(ORDINARY))
def test_a_64_kib_run_of_markup_characters_converts_in_bounded_time(
    converter: str, unit: str
) -> None:
    """Each converter, each run: linear; what comes before it is converted as ever."""
    convert, ordinary, expected = ORDINARY[converter]
    with hang_detector():
        converted = convert(ordinary + "\n" + hostile(unit))
    assert converted.startswith(expected + "\n")


@pytest.mark.parametrize("unit", ["[", "[[", "![", "[a", "[](", "[a|"])
def test_a_64_kib_run_of_brackets_before_a_pasted_file_is_found_in_bounded_time(
    unit: str,
) -> None:
    """GitHub's pasted-file links: the label stops at the innermost ``[``."""
    pattern = linked_file_pattern("https://github.com")
    url = "https://github.com/user-attachments/files/1/log.txt"
    with hang_detector():
        found = [m.groupdict() for m in pattern.finditer(hostile(unit) + f" [log.txt]({url})")]
    assert found == [{"label": "log.txt", "url": url}]


def test_brackets_inside_a_label_take_the_innermost_link() -> None:
    """``[see [b](u)``: a renderer links ``[b](u)``; so does the import now.

    Before, the label ran from the first ``[`` (``see [b``); Jira made
    ``[[a|u]`` a link labelled ``[a`` either way.
    """
    assert cite("[see #12 [b](http://x.org)") == (
        "[see [#12](/imported?id=trac:12) [b](http://x.org)"
    )
    assert jira_to_markdown("[[a|http://x.org]") == "[[a](http://x.org)"
    assert trac("[ticket:3 see [ticket:4 four]") == "[ticket:3 see four (#4)"
