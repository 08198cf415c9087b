"""The attachment-list cache: per (issue, version), for its TTL, never a newer list as an older."""

from __future__ import annotations

from dataclasses import dataclass

from bugless_proto import v1
from bugless_web.kept_attachments import KEPT_ISSUES, KeptAttachments


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def _attachment(attachment_id: int, entry: int, deleted: int = 0) -> v1.Attachment:
    return v1.Attachment(
        id=attachment_id, issue_id=7, entry_version=entry, deleted_in_version=deleted
    )


def test_a_list_is_kept_per_version_until_the_ttl_passes() -> None:
    clock = Clock()
    kept = KeptAttachments(5.0, clock=clock)
    listed = [_attachment(1, 2)]
    kept.put(7, 3, listed)
    assert kept.get(7, 3) == listed
    assert kept.get(7, 4) is None  # another version is another list
    assert kept.get(8, 3) is None
    clock.now += 5.0
    assert kept.get(7, 3) is None


def test_a_list_naming_a_later_entry_is_not_kept_as_the_earlier_version() -> None:
    kept = KeptAttachments(5.0, clock=Clock())
    kept.put(7, 3, [_attachment(1, 4)])  # uploaded after version 3 was read
    kept.put(7, 5, [_attachment(1, 2, deleted=6)])  # deleted after version 5 was read
    assert kept.get(7, 3) is None
    assert kept.get(7, 5) is None
    kept.put(7, 6, [_attachment(1, 2, deleted=6)])
    assert kept.get(7, 6) is not None


def test_a_zero_ttl_keeps_nothing_and_the_count_is_bounded() -> None:
    off = KeptAttachments(0.0, clock=Clock())
    off.put(7, 3, [])
    assert off.get(7, 3) is None
    kept = KeptAttachments(5.0, clock=Clock())
    for issue_id in range(KEPT_ISSUES + 10):
        kept.put(issue_id, 1, [])
    assert len(kept) == KEPT_ISSUES
    assert kept.get(0, 1) is None  # the least recently used went first
    assert kept.get(KEPT_ISSUES + 9, 1) == []
