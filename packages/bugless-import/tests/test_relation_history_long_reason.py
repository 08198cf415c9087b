"""A refusal message longer than the Model takes as a reason still lets the retry in.

When the Model refuses an issue's relation history, the run sends the issue
again without its relation changes, each entry that had some giving the
refusal message as why (``relations_not_imported``). The Model takes at most
:data:`~bugless_core.limits.MAX_IMPORT_REASON_LENGTH` characters there; the
message has no such bound, so the retry shortens it. The real Model, reached
as the import identity.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from import_support import ADMIN, history

from bugless_core.clients import call
from bugless_core.limits import MAX_IMPORT_REASON_LENGTH
from bugless_dev.stack import LocalStack
from bugless_import.relation_history import within_reason_length, without_relations
from bugless_proto import v1

_THEN = datetime.datetime(2021, 6, 1, 9, 0, tzinfo=datetime.UTC)


def _request(component_id: int, external_id: str, *history: v1.ImportedEntry) -> Any:
    return v1.ImportIssueRequest(
        caller=v1.Caller(user_id=ADMIN.user_id, admin=True, import_issues=True),
        external_id=external_id,
        fields=v1.IssueFields(title=external_id, component_id=component_id),
        reporter="src-ann",
        created_at=_THEN,
        history=list(history),
    )


async def test_a_long_refusal_is_shortened_with_an_ellipsis_and_the_retry_is_written(
    bugless_stack: LocalStack, model: v1.ModelStub
) -> None:
    """The entry keeps the message's start, ends in "…", and is no longer than the Model takes."""
    tag = secrets.token_hex(3)
    component = await call(
        model.create_component, v1.CreateComponentRequest(caller=ADMIN, name=f"Long{tag}")
    )
    channel = bugless_stack.client_address("model", identity="import").channel()
    try:
        importer = bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
        other = f"trac:{tag}-1"
        await importer.import_issue(_request(component.id, other))
        blocking = v1.ImportedEntry(
            author="src-ann", created_at=_THEN + datetime.timedelta(hours=1),
            comment="Blocks the other.", blocking_add=[other],
        )  # fmt: skip
        request = _request(component.id, f"trac:{tag}-2", blocking)
        refusal = "history[0].blocking_add: " + "refused because " * 200
        assert len(refusal) > MAX_IMPORT_REASON_LENGTH
        written = await importer.import_issue(without_relations(request, refusal))
    finally:
        channel.close()
    assert written.issue is not None
    assert written.issue.blocking_ids == []
    (entry,) = [e for e in await history(model, written.issue.id) if e.comment]
    assert entry.comment == "Blocks the other."
    (change,) = [c for c in entry.changes if c.field == "relations_not_imported"]
    (reason,) = change.added
    assert reason == refusal[: MAX_IMPORT_REASON_LENGTH - 1] + "\N{HORIZONTAL ELLIPSIS}"


def test_a_reason_is_cut_between_characters_never_inside_one() -> None:
    """One that fits is kept whole; a cut never parts a base from its combining marks."""
    fits = "x" * MAX_IMPORT_REASON_LENGTH
    assert within_reason_length(fits) == fits
    # "e" + two combining accents straddle the cut (the 999th character kept).
    accented = "a" * (MAX_IMPORT_REASON_LENGTH - 2) + "e\u0301\u0302" + "tail"
    shortened = within_reason_length(accented)
    assert shortened == "a" * (MAX_IMPORT_REASON_LENGTH - 2) + "\N{HORIZONTAL ELLIPSIS}"
    long_words = "ü" * (MAX_IMPORT_REASON_LENGTH + 5)
    assert (
        within_reason_length(long_words)
        == "ü" * (MAX_IMPORT_REASON_LENGTH - 1) + "\N{HORIZONTAL ELLIPSIS}"
    )


def test_a_cut_keeps_marks_of_class_0_and_emoji_sequences_whole() -> None:
    """Indic vowel signs, variation selectors and joined emoji have combining class 0.

    Before, only marks of a non-zero combining class moved the cut, so a
    Devanagari syllable lost its vowel sign and a joined emoji its tail.
    """
    head = "a" * (MAX_IMPORT_REASON_LENGTH - 2)
    ellipsis = "\N{HORIZONTAL ELLIPSIS}"
    for cluster in (
        "\u0915\u0947",  # KA + VOWEL SIGN E (Mn, class 0)
        "\u0915\u093f",  # KA + VOWEL SIGN I (Mc)
        "\u2764\ufe0f",  # heart + VARIATION SELECTOR-16
        "\U0001f44d\U0001f3fd",  # thumbs up + a skin tone
        "\U0001f469\u200d\U0001f52c",  # woman, joiner, microscope
    ):
        assert within_reason_length(head + cluster + "tail") == head + ellipsis, cluster
    # A cluster that fits before the cut is kept whole.
    fits = "a" * (MAX_IMPORT_REASON_LENGTH - 4) + "\u0915\u0947" + "tail"
    assert within_reason_length(fits) == fits[: MAX_IMPORT_REASON_LENGTH - 1] + ellipsis


def test_a_cut_keeps_a_subdivision_flag_with_its_tags() -> None:
    """Scotland's flag is a black flag and six tag characters (category Cf).

    Before, a cut inside the tags kept the black flag alone, another flag to
    its reader, before the ellipsis.
    """
    scotland = "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in "gbsct") + "\U000e007f"
    for before in range(1, len(scotland)):
        head = "a" * (MAX_IMPORT_REASON_LENGTH - 1 - before)
        cut = within_reason_length(head + scotland + "tail")
        assert cut == head + "\N{HORIZONTAL ELLIPSIS}", before


def test_a_cut_keeps_a_flag_whole() -> None:
    """A flag is a pair of regional indicators, paired from the start of their run.

    Before, neither letter of a flag belonged to the other, so a cut between
    them kept the first letter alone (a lone regional indicator) before the
    ellipsis.
    """
    ellipsis = "\N{HORIZONTAL ELLIPSIS}"
    france, japan = "\U0001f1eb\U0001f1f7", "\U0001f1ef\U0001f1f5"
    head = "a" * (MAX_IMPORT_REASON_LENGTH - 2)
    assert within_reason_length(head + france + "tail") == head + ellipsis
    # Flags before the cut are kept; the one it would halve is left out whole,
    # however many flags run up to it.
    for flags in (1, 2, 5):
        head = "a" * (MAX_IMPORT_REASON_LENGTH - 2 - 2 * flags)
        reason = head + france * flags + japan + "tail"
        assert within_reason_length(reason) == head + france * flags + ellipsis, flags
    # A cut right after a whole flag leaves it alone.
    head = "a" * (MAX_IMPORT_REASON_LENGTH - 3)
    assert within_reason_length(head + france + japan) == head + france + ellipsis
