"""HAProxy for the failover drill: its configuration and its runtime API.

The configuration comes from ``haproxy.cfg.in`` (see the comments there for
why each health check looks the way it does); this module fills it in and
builds the one thing a template cannot hold: the raw HTTP/2 bytes of a
``grpc.health.v1.Health/Check`` call, which HAProxy 2.6 sends as a
``tcp-check`` because its ``http-check`` cannot send a body with NUL bytes.

Every backend has one more server slot than it has replicas, so a rolling
restart can start the replacement first (``maxSurge: 1, maxUnavailable: 0``,
as the Helm chart rolls), in the free slot, without reloading HAProxy.
Replicas bind port 0 and report the port they got; the drill then points
their slot at it through the runtime API (:meth:`Haproxy.set_server_port`),
so no port is chosen ahead and raced for. A slot with no process behind it
points at port 1, where nothing listens: it is simply DOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("haproxy.cfg.in")
HAPROXY = "/usr/sbin/haproxy"

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_DATA, _FRAME_HEADERS, _FRAME_SETTINGS = 0x0, 0x1, 0x4
_FLAG_END_STREAM, _FLAG_END_HEADERS = 0x1, 0x4
#: ``HealthCheckResponse{status: SERVING}`` as a gRPC message: no compression,
#: length 2, field 1 varint 1.
_SERVING_REPLY = bytes.fromhex("00000000020801")
#: ``runtime API`` operational state of a server that takes traffic.
_SRV_RUNNING = 2


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
    return header + payload


def _hpack_string(value: bytes) -> bytes:
    if len(value) > 126:
        raise ValueError("header values this long need a multi-byte HPACK length")
    return bytes([len(value)]) + value


def grpc_health_check_request(service: str, *, authority: str = "localhost") -> bytes:
    """The HTTP/2 bytes a client sends to call ``Health/Check`` for ``service``.

    Sent as they are over TLS (the probe's ``tcp-check connect ssl``); the
    request's ``:scheme`` says ``http``, which gRPC servers do not check.

    One connection, one stream: the preface, an empty SETTINGS frame, the
    request HEADERS (HPACK without Huffman or indexing, so no state is
    needed) and one DATA frame ending the stream. The server's own SETTINGS
    need no acknowledgement before it answers.

    Args:
        service: The service asked about (``bugless.v1.Model``; ``""`` for
            the whole server).
        authority: ``:authority`` of the request (h2 servers require one).
    """
    headers = b"".join(
        [
            b"\x83",  # :method POST (static table 3)
            b"\x86",  # :scheme http (static table 6)
            b"\x04" + _hpack_string(b"/grpc.health.v1.Health/Check"),  # :path, literal
            b"\x01" + _hpack_string(authority.encode()),  # :authority, literal
            b"\x0f\x10" + _hpack_string(b"application/grpc"),  # content-type (31)
            b"\x00" + _hpack_string(b"te") + _hpack_string(b"trailers"),
        ]
    )
    name = service.encode()
    message = b"\x0a" + _hpack_string(name) if name else b""
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    return b"".join(
        [
            _H2_PREFACE,
            _frame(_FRAME_SETTINGS, 0, 0, b""),
            _frame(_FRAME_HEADERS, _FLAG_END_HEADERS, 1, headers),
            _frame(_FRAME_DATA, _FLAG_END_STREAM, 1, body),
        ]
    )


def grpc_tcp_check(service: str, *, tls: bool = False) -> str:
    """HAProxy ``tcp-check`` rules passing only while ``service`` is SERVING."""
    connect = "tcp-check connect ssl sni localhost alpn h2" if tls else "tcp-check connect"
    status_prefix = _SERVING_REPLY[:-1].hex()
    return "\n".join(
        f"    {line}"
        for line in (
            connect,
            f"tcp-check send-binary {grpc_health_check_request(service).hex()}",
            f"tcp-check expect comment 'gRPC health reply' binary {status_prefix}",
            f"tcp-check expect min-recv 1 comment SERVING binary {_SERVING_REPLY.hex()}",
        )
    )


@dataclass(frozen=True)
class Backend:
    """One HAProxy backend and its server slots.

    Attributes:
        name: Backend name in the configuration (``model``, ``api``...).
        slots: Number of server slots; server ``<name><i>`` is slot ``i``
            counted from 1.
    """

    name: str
    slots: int

    def server(self, slot: int) -> str:
        """HAProxy's name of slot ``slot`` (0-based)."""
        return f"{self.name}{slot + 1}"


@dataclass(frozen=True)
class HaproxyLayout:
    """Everything the configuration is made from.

    Attributes:
        model_port: Where the Model frontend listens (mutual TLS passed through).
        auth_port: Where the Authenticator frontend listens (likewise).
        api_port: Where the API frontend listens (TLS passed through).
        web_port: Where the web frontend listens (HTTP/1.1), or None for a
            drill without the web tier.
        backends: The backends by name: ``model``, ``auth``, ``api``, ``web``.
        admin_socket: The runtime API's Unix socket.
        probe_pem: Certificate and key (one PEM) every gRPC check presents.
        ca_file: CA bundle of the services' server certificates.
        check_interval_ms: Health check period of every server.
        check_timeout_ms: How long one check may take.
    """

    model_port: int
    auth_port: int
    api_port: int
    web_port: int | None
    backends: Mapping[str, Backend]
    admin_socket: Path
    probe_pem: Path
    ca_file: Path
    check_interval_ms: int = 500
    check_timeout_ms: int = 500


#: Where an empty slot points: nothing listens on port 1 (tcpmux), so its
#: checks fail at once and the slot stays DOWN until a replica takes it.
EMPTY_SLOT_PORT = 1


def _servers(backend: Backend, options: str) -> str:
    return "\n".join(
        f"    server {backend.server(i)} 127.0.0.1:{EMPTY_SLOT_PORT} {options}"
        for i in range(backend.slots)
    )


def render_config(layout: HaproxyLayout) -> str:
    """The HAProxy configuration for ``layout``."""
    # Every gRPC tier takes mutual TLS only: the check presents the probe certificate.
    tls = f"check crt {layout.probe_pem} ca-file {layout.ca_file} verify required"
    web_section = ""
    if layout.web_port is not None:
        web_section = "\n".join(
            [
                "",
                "# ---- Web: HTTP/1.1, balanced per request; /readyz fails while a replica drains.",
                "frontend web_in",
                "    mode http",
                f"    bind 127.0.0.1:{layout.web_port}",
                "    option forwardfor",
                "    default_backend web",
                "",
                "backend web",
                "    mode http",
                "    balance roundrobin",
                "    http-reuse safe",
                "    # Page loads are GETs: safe to replay on another replica when a",
                "    # connection fails or a reused keep-alive connection was closed.",
                "    retry-on conn-failure empty-response response-timeout",
                "    option redispatch 1",
                "    option httpchk GET /readyz",
                "    http-check expect status 200",
                _servers(layout.backends["web"], "check"),
            ]
        )
    template = string.Template(TEMPLATE.read_text())
    return template.substitute(
        admin_socket=layout.admin_socket,
        check_interval_ms=layout.check_interval_ms,
        check_timeout_ms=layout.check_timeout_ms,
        model_port=layout.model_port,
        model_check=grpc_tcp_check("bugless.v1.Model", tls=True),
        model_servers=_servers(layout.backends["model"], tls),
        auth_port=layout.auth_port,
        auth_check=grpc_tcp_check("bugless.v1.Authenticator", tls=True),
        auth_servers=_servers(layout.backends["auth"], tls),
        api_port=layout.api_port,
        api_check=grpc_tcp_check("", tls=True),
        api_servers=_servers(layout.backends["api"], tls),
        web_section=web_section,
    )


class Haproxy:
    """One HAProxy process, and questions to its runtime API.

    Attributes:
        config: The configuration file it runs with.
        log: Where its output goes.
    """

    def __init__(self, config: Path, admin_socket: Path, log: Path) -> None:
        """Prepare to run HAProxy with ``config``; :meth:`start` runs it."""
        self.config = config
        self.log = log
        self._admin_socket = admin_socket
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Check the configuration, then run HAProxy in the foreground of a child.

        Raises:
            RuntimeError: HAProxy is not installed, or refused the configuration.
        """
        binary = shutil.which("haproxy") or HAPROXY
        if not Path(binary).exists():
            msg = "HAProxy is not installed: apt-get install haproxy (Debian package)"
            raise RuntimeError(msg)
        checked = subprocess.run(
            [binary, "-c", "-q", "-f", str(self.config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if checked.returncode != 0:
            msg = f"HAProxy refused {self.config}:\n{checked.stdout}{checked.stderr}"
            raise RuntimeError(msg)
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [binary, "-db", "-f", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not self._admin_socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                msg = f"HAProxy did not start:\n{self.log.read_text(errors='replace')}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop HAProxy (SIGUSR1: soft stop, then kill if it lingers)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGUSR1)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def command(self, line: str) -> str:
        """Send one runtime API command and return its answer."""
        reader, writer = await asyncio.open_unix_connection(str(self._admin_socket))
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def set_server_port(self, backend: str, server: str, port: int) -> None:
        """Point ``backend/server`` at ``127.0.0.1:port`` (its checks follow).

        Raises:
            RuntimeError: HAProxy refused the change.
        """
        answer = await self.command(f"set server {backend}/{server} addr 127.0.0.1 port {port}")
        # HAProxy answers "IP changed from ..., port changed from ..." or
        # "no need to change the addr/port" (a replica that got the slot's
        # old port); anything else is a refusal.
        if "changed" not in answer and "no need to change" not in answer:
            msg = f"HAProxy would not point {backend}/{server} at port {port}: {answer.strip()}"
            raise RuntimeError(msg)

    async def servers_up(self, backend: str) -> dict[str, bool]:
        """Whether each server of ``backend`` takes traffic now (HAProxy's view)."""
        answer = await self.command(f"show servers state {backend}")
        states: dict[str, bool] = {}
        for line in answer.splitlines():
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state ...
            if len(fields) > 5 and fields[1] == backend and fields[5].isdigit():
                states[fields[3]] = int(fields[5]) == _SRV_RUNNING
        return states

    async def wait_server(self, backend: str, server: str, *, up: bool, within: float) -> float:
        """Wait until HAProxy sees ``server`` UP (or DOWN); return the seconds waited.

        Raises:
            TimeoutError: It did not happen within ``within`` seconds.
        """
        started = time.monotonic()
        while True:
            if (await self.servers_up(backend)).get(server) is up:
                return time.monotonic() - started
            if time.monotonic() - started > within:
                state = "UP" if up else "DOWN"
                msg = f"HAProxy did not see {backend}/{server} {state} within {within:.0f}s"
                raise TimeoutError(msg)
            await asyncio.sleep(0.05)
