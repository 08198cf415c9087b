"""The root README's search-language section names exactly the sort keys the parser takes.

A triager learns the language from that section (the web UI shows examples
only); before, it named none but ``sort:priority,-modified`` and
``sort:stars``, and ``sort:votecount`` (the field's name) was refused.
"""

from __future__ import annotations

import re

from docs_support import ROOT

from bugless_core.search import QuerySyntaxError, SortField, parse_query


def test_the_readme_lists_every_sort_key_and_only_those() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sentence = re.search(r"`sort:` takes, comma-separated.*?`\.\s", text, re.S)
    assert sentence, "README.md: the sentence listing the sort keys is gone"
    listed = set(re.findall(r"`(-?[\w<>]+)`", sentence.group(0).replace("\n", " ")))
    assert "customfield<ID>" in listed
    keys = listed - {"-", "customfield<ID>"}
    # Every sort field is listed, by its name, and every key listed sorts.
    assert {f.value for f in SortField if f is not SortField.CUSTOM} <= keys
    for key in keys:
        assert parse_query(f"sort:-{key}").sort, key
    for unlisted in ("votecount", "assignee", "closed"):
        try:
            parse_query(f"sort:{unlisted}")
        except QuerySyntaxError:
            continue
        raise AssertionError(f"sort:{unlisted} sorts but README.md does not list it")
