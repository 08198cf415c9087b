"""A real S3-compatible server for a test session: moto in server mode, on loopback.

The server is an HTTP process of its own (``ThreadedMotoServer`` inside a
child Python), bound to ``127.0.0.1`` port 0, its port read back from the
child; the code under test talks to it over a socket with a real S3 client,
never through moto's in-process mocking. Enable the plugin in a conftest::

    pytest_plugins = ["bugless_testing.s3"]

and ask for the session fixture ``s3_server``. moto keeps everything in the
child's memory and temporary files; it is gone when the server stops. The
child also exits when its stdin closes, so a test run that dies does not leave
it behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

#: Credentials moto accepts (any non-empty pair works).
ACCESS_KEY = "bugless-test-key"
SECRET_KEY = "bugless-test-secret"
REGION = "us-east-1"

_SERVER = """
import sys
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@dataclass
class S3TestServer:
    """A running moto server.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``.
        process: The server process.
    """

    endpoint_url: str
    process: subprocess.Popen[str] = field(repr=False)

    def environ(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point botocore's default credential chain here."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def stop(self) -> None:
        """Stop the server (closing its stdin) and wait for it; kill it if it hangs."""
        if self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_s3_server() -> S3TestServer:
    """Start moto's S3-compatible server on a loopback port chosen by the kernel.

    Raises:
        RuntimeError: the server did not start (moto[server] not installed?),
            with what it printed.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The server logs every request on stderr: a file, not a pipe nobody
    # reads (which would fill up and block the server).
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            process.kill()
            process.wait(timeout=10)
            log.seek(0)
            msg = (
                "the moto S3 server did not start (is moto[server] installed?): "
                f"{line} {log.read()[-2000:]}"
            )
            raise RuntimeError(msg)
    return S3TestServer(endpoint_url=f"http://127.0.0.1:{int(line)}", process=process)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    """The session's S3-compatible server; stopped at session end."""
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()
