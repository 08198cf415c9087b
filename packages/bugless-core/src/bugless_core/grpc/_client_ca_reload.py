"""A serving gRPC server re-reads its client CA bundle when the file changes.

Rotating the CA that signs client certificates (the API's bots, a people CA,
the services' CA) adds the new CA to ``--client-ca`` first and removes the old
one last (the Authenticator README's "Replacing the bot CA"). Both steps used
to need a restart of every replica, since the TLS context was built once at
start. Now the files the context's client CAs came from (``client_ca`` and
the runner's ``more_client_cas``) are looked at every
:data:`CLIENT_CA_CHECK_SECONDS` (a ``stat`` each, off the event loop); when
one changed, a whole new context is built from the files as they are and new
connections use it, while connections already made keep theirs (their
handshake is over, and a client is not cut off mid-work by a rotation). A
Kubernetes Secret mounted as a volume changes this way when it is updated.

The switch happens in the listening context's SNI callback, which OpenSSL
runs for every ClientHello before it asks for the client's certificate:
setting ``SSLObject.context`` there hands that one handshake to the new
context, whose certificate store then verifies the client. A file that
cannot be used any more (unreadable, not PEM, no certificate) is logged as an
error and the last good context stays in force: refusing every client over a
bad edit would be worse than trusting a little longer a CA the operator
meant to remove, and the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from bugless_core.grpc._settings import GrpcServerSettings
from bugless_core.grpc._tls import build_server_ssl_context
from bugless_core.setting_files import pem_certificates

logger = logging.getLogger("bugless_core.grpc")

#: How often a server looks whether its client CA files changed.
CLIENT_CA_CHECK_SECONDS = 2.0

_FileState = tuple[int, int, int] | None


class ClientCaReload:
    """Keeps the client CAs a server's new connections are verified with in step with the files.

    Attributes:
        context: The context new connections are handed to now (the one the
            server listens with until a file first changes).
        reloads: How many times a changed bundle was taken into use.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        settings: GrpcServerSettings,
        more_client_cas: Sequence[Path] = (),
        *,
        name: str,
        check_seconds: float = CLIENT_CA_CHECK_SECONDS,
    ) -> None:
        """Watch ``settings.client_ca`` and ``more_client_cas`` for ``context``, built from them.

        Installs the SNI callback on ``context``: the server must listen with it.

        Raises:
            ValueError: ``settings`` has no ``client_ca`` (no client is verified).
        """
        if settings.client_ca is None:
            raise ValueError("only a server that verifies clients (client_ca) has CAs to re-read")
        self.context = context
        self.reloads = 0
        self._settings = settings
        self._more = tuple(more_client_cas)
        self._paths = (settings.client_ca, *self._more)
        self._name = name
        self._check_seconds = check_seconds
        self._seen = [_file_state(path) for path in self._paths]
        self._task: asyncio.Task[None] | None = None
        context.sni_callback = self._hand_over

    def _hand_over(
        self, connection: ssl.SSLObject, server_name: str | None, listening: ssl.SSLContext
    ) -> None:
        """Give a new connection's handshake to the current context (the SNI callback)."""
        del server_name  # one certificate for every name the server is called by
        if self.context is not listening:
            connection.context = self.context

    def start(self) -> None:
        """Look at the files every ``check_seconds`` until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._every_check())

    async def stop(self) -> None:
        """Stop looking (a check under way is cancelled; the context in use stays)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _every_check(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            try:
                await self.check()
            except Exception:  # a bug: logged, and the last good context kept
                logger.exception("%s: checking the client CA files failed", self._name)

    async def check(self) -> bool:
        """Take the files into use if one changed since the last look; whether it did.

        A bundle that cannot be used is logged (naming the file and why) and
        leaves the context as it was; it is tried again when a file changes.
        """
        states = await asyncio.to_thread(lambda: [_file_state(p) for p in self._paths])
        if states == self._seen:
            return False
        self._seen = states
        try:
            context = await asyncio.to_thread(self._build)
        except (OSError, ssl.SSLError, ValueError) as exc:
            logger.error(
                "%s: the client CA files changed but cannot be used (%s); new connections "
                "are still verified with the last good ones",
                self._name,
                exc,
                extra={"service": self._name, "client_ca": [str(p) for p in self._paths]},
            )
            return False
        self.context = context
        self.reloads += 1
        count = context.cert_store_stats()["x509_ca"]
        logger.info(
            "%s: client CA bundle reloaded from %s: %d CA certificates; new connections are "
            "verified with it, open ones keep theirs",
            self._name,
            ", ".join(str(p) for p in self._paths),
            count,
            extra={
                "service": self._name,
                "client_ca": [str(p) for p in self._paths],
                "certificates": count,
            },
        )
        return True

    def _build(self) -> ssl.SSLContext:
        """A context from the files as they are now (blocking: run in a thread).

        Raises:
            OSError: a file cannot be read.
            ValueError: a client CA file holds no PEM certificate, or a broken one.
            ssl.SSLError: OpenSSL refuses a file.
        """
        for path in self._paths:
            try:
                pem_certificates(path.read_bytes())
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc
        context = build_server_ssl_context(self._settings, more_client_cas=self._more)
        if context is None:  # the settings are the same as at start, which had TLS
            raise ValueError("the settings no longer configure TLS")
        return context


def _file_state(path: Path) -> _FileState:
    """(modification time, size, inode) of ``path`` (through a symlink), None if it cannot be read.

    The inode catches a Kubernetes volume's swap of its ``..data`` link to a
    new directory even when time and size happen to match.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
