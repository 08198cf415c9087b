"""An expected outage is logged when it starts, rarely while it lasts, and when it ends.

:class:`~bugless_core.supervision.OutageLog` decides what a loop logs for the
errors it expects; the loops' own tests (the notifier against a stopped
Model, a lease renewal against a database refusing logins) show it in place.
Here: the rule itself, round by round on a clock the test steps, and what a
:class:`~bugless_core.supervision.SupervisedLoop` counts (nothing) for it.
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.errors import Unavailable
from bugless_core.supervision import OutageLog, SupervisedLoop

LOGGER = "test.outage"


class SteppedClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_an_outage_of_150_rounds_logs_a_warning_two_reminders_and_one_info_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SteppedClock()
    outage = OutageLog(
        "feed consumer",
        logger=logging.getLogger(LOGGER),
        meanwhile="retrying every second",
        clock=clock,
    )
    refused = ConnectionRefusedError(111, "Connection refused")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        outage.recovered()  # healthy: nothing to say
        for _ in range(150):  # a round a second, for 150 s
            outage.failed(refused)
            clock.now += 1.0
        assert outage.seconds == 150.0
        outage.recovered()
        outage.recovered()  # healthy again: nothing more

    started, *reminders = _records(caplog, logging.WARNING)
    assert started.getMessage() == (
        "feed consumer: ConnectionRefusedError: [Errno 111] Connection refused; "
        "retrying every second (reminded every 60 s while it lasts)"
    )
    assert [r.getMessage() for r in reminders] == [
        "feed consumer: still failing after 60.0 s (61 rounds): "
        "ConnectionRefusedError: [Errno 111] Connection refused",
        "feed consumer: still failing after 120.0 s (121 rounds): "
        "ConnectionRefusedError: [Errno 111] Connection refused",
    ]
    assert len(_records(caplog, logging.DEBUG)) == 150 - 3  # every other round, for a debug log
    [ended] = _records(caplog, logging.INFO)
    assert ended.getMessage() == "feed consumer: working again after 150.0 s (150 failed rounds)"
    assert (ended.__dict__["loop"], ended.__dict__["failed_rounds"]) == ("feed consumer", 150)
    assert ended.__dict__["outage_seconds"] == 150.0
    assert all(r.exc_info is None for r in caplog.records)
    assert {r.filename for r in caplog.records} == {"test_outage_log.py"}  # the loop's line
    assert outage.failed_rounds == 0
    assert outage.seconds == 0.0
    assert outage.last_error is refused


def test_the_next_outage_starts_with_a_warning_again_and_names_the_step_that_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SteppedClock()
    outage = OutageLog("delivery queue", logger=logging.getLogger(LOGGER), clock=clock)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        outage.failed(OSError("the database is away"), during="claim")
        outage.recovered()
        clock.now += 5.0
        outage.failed(TimeoutError(), during="record")
        outage.failed("not answering a probe")

    assert [r.getMessage() for r in _records(caplog, logging.WARNING)] == [
        "delivery queue: claim: OSError: the database is away; retrying "
        "(reminded every 60 s while it lasts)",
        "delivery queue: record: TimeoutError; retrying (reminded every 60 s while it lasts)",
    ]
    assert [r.getMessage() for r in _records(caplog, logging.DEBUG)] == [
        "delivery queue: still failing after 0.0 s (2 rounds): not answering a probe"
    ]


def test_a_supervised_loop_counts_no_failure_for_an_outage_and_ends_it_when_a_round_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    clock = SteppedClock()
    supervised = SupervisedLoop(
        "test.outage_loop",
        registry=registry,
        outage=OutageLog("test loop", logger=logging.getLogger(LOGGER), clock=clock),
    )
    labels = {"loop": "test.outage_loop"}
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(5):
            supervised.unavailable(Unavailable("the Model is not answering"))
            clock.now += 1.0
        supervised.succeeded()

    assert len(_records(caplog, logging.WARNING)) == 1
    [ended] = _records(caplog, logging.INFO)
    assert ended.getMessage() == "test loop: working again after 5.0 s (5 failed rounds)"
    assert ended.__dict__["loop"] == "test.outage_loop"  # the loop's name, for the log's fields
    assert {r.filename for r in caplog.records if r.name == LOGGER} == {"test_outage_log.py"}
    assert registry.get_sample_value("bugless_background_failures_total", labels) == 0
    assert registry.get_sample_value("bugless_background_consecutive_failures", labels) == 0
    assert supervised.consecutive_failures == 0
