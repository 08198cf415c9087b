"""``python -m bugless_testing.smtp``: the sink as a process, as the delivery benchmark runs it."""

from __future__ import annotations

import smtplib
import subprocess
import sys


def test_a_sink_on_ipv6_loopback_says_where_it_listens_with_the_host_in_brackets() -> None:
    """The first line is ``listening on [::1]:PORT``, and mail is taken there.

    Before, the line joined host and port as they were: ``listening on
    ::1:PORT``, which reads as one address.
    """
    sink = subprocess.Popen(
        [sys.executable, "-m", "bugless_testing.smtp", "--host", "::1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        line = sink.stdout.readline().strip()
        assert line.startswith("listening on [::1]:"), line
        port = int(line.rpartition(":")[2])
        with smtplib.SMTP("::1", port, timeout=10) as smtp:
            refused = smtp.sendmail("bot@example.com", ["ops@example.com"], "Subject: hi\n\nhi\n")
        assert refused == {}
    finally:
        sink.terminate()
        sink.communicate(timeout=10)
