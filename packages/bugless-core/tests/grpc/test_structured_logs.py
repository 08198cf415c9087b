"""The server's logs as a collector reads them: one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
from grpc_test_server import StartRunner

from bugless_core.logs import configure_logging, set_worker


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Where :func:`configure_logging` writes; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_start_and_stop_are_logged_as_json_with_their_fields(
    start_runner: StartRunner, log_stream: io.StringIO
) -> None:
    configure_logging("info", json=True, stream=log_stream)

    runner = await start_runner()
    await runner.close()

    warning, started, stopped = (
        r for r in _json_lines(log_stream) if r["logger"] == "bugless_core.grpc"
    )
    assert warning["level"] == "WARNING"
    assert "--insecure-local" in str(warning["message"])
    assert warning["insecure_local"] is True
    assert started["level"] == "INFO"
    assert started["message"] == f"test-model serving gRPC on 127.0.0.1:{runner.port}"
    assert started["port"] == runner.port
    assert started["grpc_services"] == ["bugless.v1.Model"]
    assert started["mutual_tls"] is False
    assert str(started["time"]).endswith("Z")
    assert stopped["cancelled_calls"] == 0


def test_exceptions_and_unencodable_values_still_make_one_json_line(
    log_stream: io.StringIO,
) -> None:
    configure_logging(logging.DEBUG, json=True, stream=log_stream)
    logger = logging.getLogger("bugless_core.tests")

    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it broke", extra={"where": object.__new__(type("Odd", (), {}))})

    (record,) = _json_lines(log_stream)
    assert record["message"] == "it broke"
    assert "ValueError: boom" in str(record["exception"])
    assert "Odd object" in str(record["where"])


def test_text_mode_appends_extra_fields_and_reconfiguring_replaces_the_handler(
    log_stream: io.StringIO,
) -> None:
    configure_logging("info", json=True, stream=io.StringIO())
    configure_logging("debug", json=False, stream=log_stream)

    logging.getLogger("bugless_core.tests").debug("hello", extra={"port": 50051})

    assert log_stream.getvalue().rstrip().endswith("DEBUG bugless_core.tests: hello port=50051")


def test_every_json_record_names_its_process(log_stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=log_stream)

    logging.getLogger("bugless_core.tests").info("hello", extra={"pid": "not mine"})

    (record,) = _json_lines(log_stream)
    assert record["pid"] == os.getpid()  # a fixed key: an extra field cannot replace it
    assert "worker" not in record


@pytest.fixture
def as_worker() -> Iterator[None]:
    """This process named worker 1, as a ``--workers`` web worker names itself after the fork."""
    set_worker(1)
    yield
    set_worker(None)


@pytest.mark.usefixtures("as_worker")
def test_a_numbered_worker_names_itself_in_json_and_text(log_stream: io.StringIO) -> None:
    configure_logging("info", json=True, stream=log_stream)
    logging.getLogger("bugless_core.tests").info("from a worker", extra={"port": 8080})
    (record,) = _json_lines(log_stream)
    assert (record["pid"], record["worker"], record["port"]) == (os.getpid(), 1, 8080)

    text = io.StringIO()
    configure_logging("info", json=False, stream=text)
    logging.getLogger("bugless_core.tests").info("from a worker", extra={"port": 8080})
    assert text.getvalue().rstrip().endswith("bugless_core.tests: from a worker worker=1 port=8080")


def test_unknown_level_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
