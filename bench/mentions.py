"""@mention extraction: e7c9a50's ``mentioned_usernames`` against the current one, in one process.

    python -m bench.mentions [--rounds 7] [--calls 2000]

e7c9a50 made a mention what the web links: ``@name`` in the prose of the
text's Markdown parse, with linkify-it's patterns run over every text token
of a text with an ``@``. The current code answers linkify-it's pretest and
test with "no link" at once where no link can be
(:class:`bugless_core.markdown.QuickLinkify`) and remembers each text's
answer by digest (``bugless_core.mentions._text_mentions``). ``old`` here is
e7c9a50's path (the same raw pre-check and prose reading, a parser with
linkify-it's own ``LinkifyIt``, nothing remembered); ``new miss`` the current
code on texts it has not seen (distinct texts, cache cleared first); ``new
hit`` the same texts again. Both answers are checked equal for every text
first. Figures: CPU µs per call (``time.process_time``), the ways alternated
within each round in rotating order, min and median of ``--rounds``; the
1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from mdit_py_plugins.tasklists import tasklists_plugin

from bugless_core import mentions
from bugless_core.mentions import _may_mention, mentioned_usernames, prose_mentions

_PROSE = (
    "Thanks for the report. I looked into the failure on the staging cluster and it seems the "
    "scheduler retries the job twice before giving up, which explains the duplicate mails. "
    "@alice could you check whether the retry budget is configurable? The relevant code is in "
    "the worker module, around the backoff loop. I think we should cap it at one retry and log "
    "a warning instead. Also the timeout of 30 seconds looks too short for the larger exports; "
    "maybe 120 would do. Let me know what you think, and whether this needs a migration. "
)

#: name -> text: the shapes the Model and the notifier read.
SHAPES = {
    "500 chars, a mention": _PROSE[:500],
    "500 chars, a mention and a URL": (
        _PROSE[:300] + " See https://ci.example.com/jobs/4711/log for the run. " + _PROSE[300:]
    )[:500],
    "500 chars, no @": _PROSE[:500].replace("@", ""),
    "4 KiB, 5 mentions, code, links, an address": (
        (
            _PROSE
            + "\n\n```\n@decorator\ndef f(): pass\n```\n\n"
            + "cc @bob, _@carol_ and **@dan**; mail ops@example.com. "
            + "[the log](https://ci.example.com/1) and `@notme`.\n\n- [ ] @erin to review\n"
        )
        * 4
    )[:4096],
    "title, a mention": "Nightly export times out for @alice's team",
}


def _old_parser() -> MarkdownIt:
    """e7c9a50's ``markdown_parser``: the same configuration with linkify-it's own linkifier."""
    markdown = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    markdown.enable(["table", "strikethrough", "linkify"])
    markdown.linkify = LinkifyIt()
    markdown.linkify.set({"fuzzy_link": False})
    markdown.use(tasklists_plugin, enabled=False)
    return markdown


_OLD = _old_parser()


def old_mentioned_usernames(*texts: str) -> list[str]:
    """e7c9a50's ``mentioned_usernames``."""
    seen: dict[str, None] = {}
    for text in texts:
        if not _may_mention(text):
            continue
        for _, found in prose_mentions(_OLD.parse(text)):
            for mention in found:
                seen.setdefault(mention.key, None)
    return list(seen)


def _per_call(function: Callable[[str], object], texts: list[str]) -> float:
    """CPU µs per call of ``function`` over ``texts``."""
    start = time.process_time()
    for text in texts:
        function(text)
    return (time.process_time() - start) / len(texts) * 1e6


def measure(texts: list[str], rounds: int) -> dict[str, list[float]]:
    """CPU µs per call of each way over ``texts``, per round (ways alternated, order rotating)."""
    for sample in texts[:50]:
        assert old_mentioned_usernames(sample) == mentioned_usernames(sample), sample
    figures: dict[str, list[float]] = {"old": [], "miss": [], "hit": []}
    for round_ in range(rounds):
        for way in ("old", "miss", "hit") if round_ % 2 == 0 else ("miss", "hit", "old"):
            if way == "old":
                figures[way].append(_per_call(old_mentioned_usernames, texts))
            else:
                if way == "miss":
                    mentions._text_cache.clear()
                # "hit" runs right after "miss": every text is remembered.
                figures[way].append(_per_call(mentioned_usernames, texts))
    return figures


def main() -> None:
    """Print old against new, µs CPU per call, per text shape."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="texts per way and round")
    args = parser.parse_args()
    print("| text | old µs (min / median) | new miss µs | new hit µs | old / new miss | load |")
    print("|---|---|---|---|---|---|")
    for name, text in SHAPES.items():
        # Distinct texts (a number appended), so that a miss is a miss.
        texts = [f"{text} {i}" for i in range(min(args.calls, mentions.TEXT_CACHE_SIZE))]
        load_start = os.getloadavg()[0]
        figures = measure(texts, args.rounds)
        load_end = os.getloadavg()[0]
        cells = " | ".join(
            f"{min(figures[way]):.1f} / {statistics.median(figures[way]):.1f}"
            for way in ("old", "miss", "hit")
        )
        ratio = statistics.median(figures["old"]) / statistics.median(figures["miss"])
        print(f"| {name} | {cells} | {ratio:.1f}x | {load_start:.1f}-{load_end:.1f} |")


if __name__ == "__main__":
    main()
