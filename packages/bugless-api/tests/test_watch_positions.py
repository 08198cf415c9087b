"""Where a reconnecting watch resumes, and what it drops (the client's own bookkeeping).

One change can give several events with one feed position (a batch change,
a blocking link). A stream cut between two of them must resume from the
position before, or the rest of that change would be lost, and must drop
what was yielded already, or it would come twice. The servers' side of a
reconnection is tested end to end in ``test_api_watch_resume.py``; a cut
*between* two events of one change cannot be timed there, so the rule is
pinned down here on the events themselves.
"""

from __future__ import annotations

from bugless_api.client._watch import _Resume
from bugless_proto import v1


def _event(position: int, issue_id: int, version: int) -> v1.WatchEvent:
    return v1.WatchEvent(
        issue=v1.Issue(id=issue_id, version=version),
        entry=v1.HistoryEntry(version=version),
        position=position,
    )


def test_a_fresh_watch_resumes_after_the_head_it_subscribed_at() -> None:
    resume = _Resume(None)
    assert resume.after_position() is None
    resume.subscribed(v1.WatchEvent(subscribed=True, position=41))
    assert resume.after_position() == 41
    # A later marker (a reconnection's) moves nothing: changes after 41 are due.
    resume.subscribed(v1.WatchEvent(subscribed=True, position=57))
    assert resume.after_position() == 41


def test_a_given_position_stands_until_a_change_is_yielded() -> None:
    resume = _Resume(12)
    resume.subscribed(v1.WatchEvent(subscribed=True, position=30))
    assert resume.after_position() == 12


def test_a_change_cut_part_way_is_resumed_from_before_it_without_repeats() -> None:
    resume = _Resume(None)
    resume.subscribed(v1.WatchEvent(subscribed=True, position=9))
    assert resume.is_new(_event(10, 1, 2))  # first entry of change 10; then the cut
    assert resume.after_position() == 9  # change 10 may have more entries
    replayed = [_event(10, 1, 2), _event(10, 2, 5), _event(11, 1, 3)]
    assert [resume.is_new(e) for e in replayed] == [False, True, True]
    assert resume.after_position() == 10
    # An event of a change already passed is never yielded again either.
    assert not resume.is_new(_event(10, 3, 1))
