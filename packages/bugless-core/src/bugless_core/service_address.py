"""Where a backend service listens: the address and TLS files a frontend's settings name.

Every service's settings (``--model``, ``--auth``, ``--notify`` with their
``--*-ca``, ``--*-cert`` and ``--*-key``) parse into a :class:`ServiceAddress`
while the CLI builds the command's options, also for ``serve --help``. So
this module imports neither the gRPC client nor the generated messages:
:meth:`ServiceAddress.channel` and :meth:`ServiceAddress.ssl_context` import
them when a service actually connects. :mod:`bugless_core.clients`, which
holds the rest of the client side, re-exports the class.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grpclib.client import Channel
    from grpclib.config import Configuration


#: Each attachment transfer stream's HTTP/2 window on a frontend's transfer
#: channel (:meth:`ServiceAddress.transfer_channel`): what the Model may send
#: one download ahead of its reader (grpclib's default, which moves a file at
#: full speed over a low-latency link).
TRANSFER_STREAM_WINDOW = 4 * 1024 * 1024
#: How many downloads on a transfer channel may stall (hold their whole
#: stream window unread) at once before the others on it wait for credit.
STALLED_TRANSFERS_SHARED = 8
#: Each Watch stream's HTTP/2 window on a frontend's watch channel
#: (:meth:`ServiceAddress.watch_channel`): several of the largest events (a
#: comment and a description of 64 Ki characters each) ahead of the reader.
WATCH_STREAM_WINDOW = 1024 * 1024
#: How many watches on a watch channel may stall at once before the others
#: on it wait for credit: its connection window holds that many stream
#: windows (32 MiB, as a transfer channel's).
STALLED_WATCHES_SHARED = 32


def _transfer_windows() -> Configuration:
    """HTTP/2 windows for streams read at a reader's pace: 4 MiB each, 32 MiB in all."""
    from grpclib.config import Configuration  # noqa: PLC0415 - see module

    return Configuration(
        http2_stream_window_size=TRANSFER_STREAM_WINDOW,
        http2_connection_window_size=TRANSFER_STREAM_WINDOW * STALLED_TRANSFERS_SHARED,
    )


def host_port(host: str, port: int) -> str:
    """``host:port`` as a person writes it, an IPv6 host in brackets (``[::1]:443``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ServiceAddress:
    """Where a backend service listens and how to talk to it.

    Attributes:
        host: Host name or address of the service.
        port: gRPC port.
        ca: PEM bundle that signed the service's certificate; setting it turns
            TLS on (production: the cluster PKI).
        cert: This frontend's client certificate (mutual TLS), with ``key``.
        key: Private key of ``cert``.
    """

    host: str
    port: int
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def parse(
        cls,
        address: str,
        *,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> ServiceAddress:
        """``host:port`` (or ``[v6]:port``) plus optional TLS files."""
        host, sep, port = address.rpartition(":")
        # ASCII digits only: str.isdigit also takes "²", which int refuses
        # with its own words instead of these.
        if not sep or not host or not (port.isascii() and port.isdigit()):
            msg = f"{address!r} is not host:port"
            raise ValueError(msg)
        return cls(host=host.strip("[]"), port=int(port), ca=ca, cert=cert, key=key)

    @property
    def authority(self) -> str:
        """``host:port`` as a person writes it: an IPv6 host in brackets (``[::1]:443``).

        :meth:`parse` strips the brackets; a message that joined the parts as
        they are would show ``::1:443``, which reads as one address.
        """
        return host_port(self.host, self.port)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None for plaintext."""
        if self.ca is None:
            return None
        from bugless_core.grpc import build_client_ssl_context  # noqa: PLC0415 - see module

        return build_client_ssl_context(self.ca, self.cert, self.key)

    def channel(self, config: Configuration | None = None) -> Channel:
        """A new grpclib channel (connects lazily, reconnects by itself).

        Every call made on it inside :func:`acting_as` carries that
        assertion. ``config`` overrides grpclib's defaults (its HTTP/2
        flow-control windows: :meth:`transfer_channel`).
        """
        from bugless_core.clients import forward_assertions  # noqa: PLC0415 - see module
        from bugless_core.grpc import CorkedChannel  # noqa: PLC0415

        return forward_assertions(
            CorkedChannel(self.host, self.port, ssl=self.ssl_context(), config=config)
        )

    def transfer_channel(self) -> Channel:
        """A new channel for attachment uploads and downloads, apart from every other call.

        A frontend passes a download on only as fast as its reader (a
        browser, an API client) takes it, and HTTP/2 gives the Model more
        credit only for what was read: a stream may hold its window unread,
        and so may a connection in all. On grpclib's defaults the
        connection's window is one stream's (4 MiB), so one reader that
        stopped held every other call on that connection until the download
        was released. On a channel of their own, transfers share no window
        with the other calls; its connection window is
        :data:`STALLED_TRANSFERS_SHARED` stream windows, so a stalled
        download holds up no other transfer either (up to that many at
        once), while what the Model may send the frontend unread stays
        bounded by it (32 MiB), however many transfers run.
        """
        return self.channel(_transfer_windows())

    def paced_channel(self) -> Channel:
        """A new channel for calls and for streams read at their caller's pace, together.

        For a client library (the API's Python client) that hands its caller
        a download's or a watch's messages only as the caller asks for them,
        on the one channel its calls use. A caller that pauses such a stream
        (to make another call in the middle of it, say) leaves the stream's
        window unread, and on grpclib's defaults that is the whole
        connection's window (4 MiB): the other call's answer could not come
        until its deadline. The connection window here is a transfer
        channel's (:data:`STALLED_TRANSFERS_SHARED` stream windows): up to
        that many paused streams hold up no call, and what the server may
        send unread stays bounded (32 MiB).
        """
        return self.channel(_transfer_windows())

    def watch_channel(self) -> Channel:
        """A new channel for Watch streams passed on at their readers' pace.

        The API passes a watch's events on only as fast as its bot reads
        them, so a bot that stops reading a busy watch leaves its stream's
        window unread, as a stalled download does (see
        :meth:`transfer_channel`): on the calls' channel it held every other
        call. Not on the transfer channel either: watches are many and
        long-lived, and neither kind should use up the connection window
        the other needs. A watch's events are small, so its stream window is
        smaller than a transfer's and more of them (:data:`STALLED_WATCHES_SHARED`)
        may stall before the others wait, within the same 32 MiB bound.
        """
        from grpclib.config import Configuration  # noqa: PLC0415 - see module

        return self.channel(
            Configuration(
                http2_stream_window_size=WATCH_STREAM_WINDOW,
                http2_connection_window_size=WATCH_STREAM_WINDOW * STALLED_WATCHES_SHARED,
            )
        )


def client_tls_problem(
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    *,
    flags: tuple[str, str, str] = ("--tls-ca", "--tls-cert", "--tls-key"),
) -> str | None:
    """What is wrong with a frontend's TLS files towards the backends, or None.

    TLS is on only with a CA (:meth:`ServiceAddress.ssl_context`), so a
    client certificate given without one was silently unused: the frontend
    connected in plaintext and failed later against a mutual-TLS backend with
    an error that named neither option. A certificate without its key (or the
    reverse) cannot be presented at all. Every frontend's settings ask this
    with their own flag names, so the rule and its words are one.

    Args:
        ca: The backends' CA bundle.
        cert: The client certificate.
        key: Its private key.
        flags: The three options' names, in that order, for the message.
    """
    ca_flag, cert_flag, key_flag = flags
    if (cert is not None or key is not None) and ca is None:
        return (
            f"{cert_flag}/{key_flag} need {ca_flag} (TLS to the backends): without it the "
            "connection would be plaintext and the certificate unused"
        )
    if (cert is None) != (key is None):
        given, missing = (cert_flag, key_flag) if key is None else (key_flag, cert_flag)
        return f"{given} needs {missing}: a client certificate and its private key go together"
    return None
