"""The mapping file and the markup converters (no services needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bugless_core.errors import InvalidArgument
from bugless_core.importer import Importer, SourceIssue, SourcePerson
from bugless_import import load_mapping
from bugless_import.sources.markup import cite_source_issues, trac_to_markdown
from bugless_proto import v1


def test_the_file_overrides_the_importers_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[statuses]\n"Closed/WontFix" = "WONT_FIX_OBSOLETE"\n', encoding="utf-8")
    mapping = load_mapping(path, {"statuses": {"new": "NEW", "closed/wontfix": "FIXED"}})
    assert mapping.enum("statuses", "closed/wontfix") == v1.Status.WONT_FIX_OBSOLETE
    assert mapping.enum("statuses", "NEW") == v1.Status.NEW
    assert mapping.enum("statuses", "limbo") == 0
    assert mapping.unmapped[("statuses", "limbo")] == 1


def test_source_values_and_labels_match_by_case_folding(tmp_path: Path) -> None:
    """Keys match in any case by ``str.casefold`` (the Model's rule), not only ASCII."""
    path = tmp_path / "m.toml"
    path.write_text(
        '[statuses]\n"ÄNDERUNG" = "NEW"\n[labels]\n"STRASSE" = "hotlist:Streets"\n',
        encoding="utf-8",
    )
    mapping = load_mapping(path, {"components": {"Straße": "Roads"}})
    assert mapping.enum("statuses", "änderung") == v1.Status.NEW
    assert mapping.component("STRASSE") == "Roads"
    target = mapping.label("straße")
    assert target is not None
    assert target.hotlist == "Streets"
    assert not mapping.unmapped


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[moods]\nhappy = 'P1'\n", "unknown section [moods]"),
        ("[priorities]\nblocker = 'P9'\n", "'P9' is not a bugless value"),
        ("[labels]\nx = 'folder:y'\n", "neither 'hotlist:<name>'"),
        ("[statuses\n", "not valid TOML"),
    ],
)
def test_a_bad_mapping_file_says_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidArgument, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_mapping(path)


def test_trac_wiki_formatting_becomes_markdown() -> None:
    text = "= Title =\n'''bold''' ''it'' [http://x.org the site] [ticket:7]\n{{{\n'''raw'''\n}}}"
    assert trac_to_markdown(text) == (
        "# Title\n**bold** *it* [the site](http://x.org) #7\n\n```\n'''raw'''\n```\n"
    )


def test_references_to_the_sources_issues_link_to_the_source_outside_code_and_links() -> None:
    def url(number: str) -> str:
        return f"https://trac.example.org/ticket/{number}"

    text = "See #2, issue 5.\n```\n#4\n```\n`#6` [l #7](http://a) page#9 https://x/#8"
    assert cite_source_issues(text, url) == (
        "See [#2](https://trac.example.org/ticket/2), [issue 5](https://trac.example.org/ticket/5)."
        "\n```\n#4\n```\n`#6` [l #7](http://a) page#9 https://x/#8"
    )
    assert cite_source_issues("See #2.", lambda _n: "") == "See #2.", "no URL: as written"


class _Source(Importer):
    """An importer whose external ids and URLs the test sets."""

    name = "src"
    description = "test"

    def __init__(self, external_id: str, url: str) -> None:
        super().__init__("", {})
        self._external_id, self._url = external_id, url

    def people(self) -> Iterator[SourcePerson]:
        return iter(())

    def issues(self) -> Iterator[SourceIssue]:
        return iter(())

    def issue_url(self, number: str) -> str:
        return self._url.format(number) if self._url else ""

    def issue_external_id(self, number: str) -> str:
        return self._external_id.format(number) if self._external_id else ""


def test_a_reference_links_to_bugless_by_external_id_with_the_source_url_along() -> None:
    both = _Source("src:P#{}", "https://t.example/ticket/{}")
    assert both.reference_link("12") == (
        "/imported?id=src%3AP%2312&source=https%3A%2F%2Ft.example%2Fticket%2F12"
    )
    assert _Source("src:{}", "").reference_link("12") == "/imported?id=src%3A12"
    # No external id (or not one the Model could hold): the source's page, or nothing.
    assert _Source("", "https://t.example/{}").reference_link("3") == "https://t.example/3"
    assert _Source('src:"{}', "").reference_link("3") == ""
    text = cite_source_issues("See #12.", both.reference_link)
    assert text == f"See [#12]({both.reference_link('12')})."


def test_a_trac_code_block_survives_inline_monospace_after_it() -> None:
    """Both were cut out as ``CODE0``: the block came back as the inline code."""
    text = "{{{\nblock code\n}}}\nand `x` here, '''`not bold`'''"
    assert trac_to_markdown(text) == "\n```\nblock code\n```\n\nand `x` here, **`not bold`**"


def test_trac_changeset_wiki_report_and_milestone_links_go_to_the_old_trac_or_stay_code() -> None:
    text = (
        '[changeset:abc12 the fix], changeset:9f3e, r123, [wiki:"Release Notes" notes], '
        "wiki:Page#Sec. report:4 [milestone:1.0]. Not http://x.org/r5, `r6`, "
        "[http://a.org/wiki:X a] or year2000."
    )
    base = "https://trac.example.org/rocket"
    assert trac_to_markdown(text, base + "/") == (
        f"[the fix]({base}/changeset/abc12), [changeset:9f3e]({base}/changeset/9f3e), "
        f"[r123]({base}/changeset/123), [notes]({base}/wiki/Release%20Notes), "
        f"[wiki:Page#Sec]({base}/wiki/Page#Sec). [report:4]({base}/report/4) "
        f"[milestone:1.0]({base}/milestone/1.0). Not http://x.org/r5, `r6`, "
        "[a](http://a.org/wiki:X) or year2000."
    )
    assert trac_to_markdown(text) == (
        'the fix (`changeset:abc12`), `changeset:9f3e`, `r123`, notes (`wiki:"Release Notes"`), '
        "`wiki:Page#Sec`. `report:4` `milestone:1.0`. Not http://x.org/r5, `r6`, "
        "[a](http://a.org/wiki:X) or year2000."
    )


def test_trac_shorthands_need_their_own_boundaries_and_a_known_page() -> None:
    """``list[5]`` is no changeset, ``JavaScript`` no page, and nothing in code is touched."""
    base = "https://trac.example.org/rocket"
    text = "list[5], x[1:2], JavaScript, WikiStart, `[5] WikiStart {4}`, ok![7]"
    assert trac_to_markdown(text, base, {"WikiStart"}) == (
        f"list[5], x[1:2], JavaScript, [WikiStart]({base}/wiki/WikiStart), "
        "`[5] WikiStart {4}`, ok[7]"
    )
    assert trac_to_markdown("WikiStart [WikiStart start]", "", {"WikiStart"}) == (
        "WikiStart start (WikiStart)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Set foo.wiki:Bar in the config.",
        "see config.ticket:12 there",
        "a-wiki:Bar, x+source:trunk/a.py",
        "the foo.wiki:WikiStart key",
        "see log.attachment:a.txt",
    ],
)
def test_a_realm_inside_a_longer_scheme_is_no_trac_link(text: str) -> None:
    """``foo.wiki:Bar`` is an InterWiki name Trac lacks (its scheme runs from the ``f``): text.

    Before, the ``wiki:Bar`` inside it became a link to the old Trac's page
    Bar (and ``config.ticket:12`` a reference to ticket 12).
    """
    base = "https://trac.example.org/rocket"
    assert trac_to_markdown(text, base, {"Bar", "WikiStart"}) == text
    # The realm on its own still links.
    assert trac_to_markdown("(wiki:Bar)", base, {"Bar"}) == f"([wiki:Bar]({base}/wiki/Bar))"


def test_trac_attachments_link_where_the_importer_says_and_the_unlinkable_stay_code() -> None:
    """Each form's (realm, id, file, raw), as Trac's attachment module and Image read them."""
    asked: list[tuple[str, str, str, bool]] = []

    def where(realm: str, resource: str, name: str, raw: bool) -> str:
        asked.append((realm, resource, name, raw))
        return "" if name.startswith("gone") else f"/f/{realm or 'here'}/{resource}/{name}"

    text = (
        'attachment:a.txt, attachment:"b c.txt", attachment:d.txt:ticket:2, '
        "attachment:ticket:3:e.txt, [raw-attachment:f.txt the file], attachment:gone.txt, "
        "[attachment:gone.txt label]. [[Image(g.png)]] [[Image(ticket:4:h.png, right)]] "
        "[[Image(#5:i.png)]] [[Image(http://x.org/j.png)]] [[Image(source:k.png)]] "
        "[[Image(gone.png)]] !attachment:a.txt `attachment:a.txt`"
    )
    assert trac_to_markdown(text, "https://trac.example.org", attachment_link=where) == (
        '[attachment:a.txt](/f/here//a.txt), [attachment:"b c.txt"](/f/here//b c.txt), '
        "[attachment:d.txt:ticket:2](/f/ticket/2/d.txt), "
        "[attachment:ticket:3:e.txt](/f/ticket/3/e.txt), [the file](/f/here//f.txt), "
        "`attachment:gone.txt`, label (`attachment:gone.txt`). ![g.png](/f/here//g.png) "
        "![h.png](/f/ticket/4/h.png) ![i.png](/f/ticket/5/i.png) "
        "![j.png](http://x.org/j.png) `[[Image(source:k.png)]]` `[[Image(gone.png)]]` "
        "attachment:a.txt `attachment:a.txt`"
    )
    assert ("", "", "f.txt", True) in asked
    assert ("", "", "a.txt", False) in asked
    # Without an importer's answer (the default): code.
    assert trac_to_markdown("attachment:a.txt [[Image(g.png)]]", "https://t.org") == (
        "`attachment:a.txt` `[[Image(g.png)]]`"
    )


def test_trac_diffs_intertrac_macros_and_free_links_are_code_with_or_without_the_url() -> None:
    text = (
        "diff:trunk@1:3, [diff:@1:3 the diff], trac:#123, trac:wiki:Page, [[BR]], [[TOC]], "
        '[[TicketQuery(status=new)]], ["free link"]; not ["open'
    )
    expected = (
        "`diff:trunk@1:3`, the diff (`diff:@1:3`), `trac:#123`, `trac:wiki:Page`, `[[BR]]`, "
        '`[[TOC]]`, `[[TicketQuery(status=new)]]`, `["free link"]`; not ["open'
    )
    assert trac_to_markdown(text, "https://trac.example.org") == expected
    assert trac_to_markdown(text) == expected
    assert cite_source_issues(expected, lambda n: f"/i/{n}") == expected, "no #123 link"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "wiki:Page[a](http://u)",
            "[wiki:Page](https://trac.example.org/wiki/Page)[a](http://u)",
        ),
        (
            "see wiki:Page<http://x>",
            "see [wiki:Page](https://trac.example.org/wiki/Page)<http://x>",
        ),
    ],
)
def test_a_trac_link_running_into_a_kept_link_stops_before_it(text: str, expected: str) -> None:
    """A kept Markdown link or autolink is a placeholder while the shorthands are read.

    A ``wiki:`` target running straight into one took the placeholder's
    ``\\x00`` into its URL (``.../wiki/Page%00LINK0%00``) and lost the kept link.
    """
    converted = trac_to_markdown(text, "https://trac.example.org")
    assert converted == expected
