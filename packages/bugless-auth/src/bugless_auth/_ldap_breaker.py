"""One circuit breaker per LDAP server: a server that failed is skipped, then probed.

Without it, every sign-in tries the servers in configured order, so while the
first one hangs (a stopped process, a partitioned network: the kernel or a
load balancer accepts the connection and nothing answers) every sign-in waits
the full timeout before it reaches a replica. With it, the first request that
sees a server fail (a connect error or a timeout) opens that server's breaker;
later requests go straight to the next server, and a background task probes
the failed one every ``retry_seconds`` until it answers, when it rejoins the
rotation at its configured place. Only the probe ever waits on a dead server.

An open server is skipped, not removed: when every server that looks healthy
fails too, requests try the open ones last, since a slow answer beats a false
"unavailable" (and a single-server deployment must not refuse sign-ins for
``retry_seconds`` after a blip). A success there closes the breaker at once.

The state is per process, in memory: replicas of the Authenticator each find
out for themselves, which costs each one request's timeout per outage.

A server's outage is logged by its :class:`~bugless_core.supervision.OutageLog`:
a WARNING when its breaker opens, a reminder once a minute while its probes
go unanswered (they used to log every probe), an INFO line when it is back
in rotation.

A probe that raises instead of answering True or False (a bug, an error the
LDAP client does not map) counts as "not answering" and is supervised as
``auth.ldap_probe:<url>`` (:class:`~bugless_core.supervision.SupervisedLoop`:
logged once with its traceback, counted, the next probe after
``retry_seconds`` or the failures' backoff, whichever is longer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bugless_core.supervision import OutageLog, SupervisedLoop

_log = logging.getLogger("bugless_auth.ldap")

#: Checks one server: True when it answered (even with a refusal), False when
#: it could not be reached or did not answer in time.
Probe = Callable[[str], Awaitable[bool]]


class ServerBreakers:
    """The breakers of the configured servers, and the order to try them in.

    Args:
        urls: Servers in configured order (the primary first).
        retry_seconds: How long a failed server is skipped before each probe.
        probe: How to check a failed server; it must bound its own duration
            (the LDAP probe connects with the connect timeout).
    """

    def __init__(self, urls: Sequence[str], *, retry_seconds: float, probe: Probe) -> None:
        if retry_seconds <= 0:
            raise ValueError(f"retry_seconds must be positive, not {retry_seconds}")
        self._urls = tuple(urls)
        self._retry_seconds = retry_seconds
        self._probe = probe
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._supervised = {url: SupervisedLoop(f"auth.ldap_probe:{url}") for url in self._urls}
        # Apart from the probes' supervision: a probe that ran without a bug
        # ends a streak of bugs, but only one that was answered ends an outage.
        self._outages = {
            url: OutageLog(
                f"ldap server {url}",
                logger=_log,
                meanwhile=f"skipped while another server answers, probed every {retry_seconds:g}s",
                loop=f"auth.ldap_probe:{url}",
            )
            for url in self._urls
        }

    def is_open(self, url: str) -> bool:
        """Whether ``url`` failed and has not answered a probe (or a request) since."""
        return url in self._probes

    @property
    def open_servers(self) -> tuple[str, ...]:
        """The servers currently skipped, in configured order."""
        return tuple(u for u in self._urls if u in self._probes)

    def order(self, prefer: str | None = None) -> list[str]:
        """Servers to try for one operation, best first.

        Healthy servers in configured order (``prefer`` first when it is
        healthy: the server that found a user should check their password),
        then the open ones as a last resort, in configured order.
        """
        healthy = [u for u in self._urls if u not in self._probes]
        if prefer in healthy:
            healthy.remove(prefer)
            healthy.insert(0, prefer)
        return healthy + [u for u in self._urls if u in self._probes]

    def record_failure(self, url: str, error: BaseException) -> None:
        """Open ``url``'s breaker (if closed) and start probing it in the background.

        Must be called from the event loop the probes should run on.
        """
        if url in self._probes:
            return
        self._outages[url].failed(error)
        self._probes[url] = asyncio.get_running_loop().create_task(
            self._probe_until_answered(url), name=f"ldap probe {url}"
        )

    def record_success(self, url: str) -> None:
        """Close ``url``'s breaker: it just answered a request."""
        task = self._probes.pop(url, None)
        if task is not None:
            task.cancel()
            self._outages[url].recovered()  # back in rotation

    async def _probe_until_answered(self, url: str) -> None:
        supervised = self._supervised[url]
        wait = self._retry_seconds
        while True:
            await asyncio.sleep(wait)
            wait = self._retry_seconds
            try:
                answered = await self._probe(url)
            except Exception as exc:  # a bug: logged and counted once, probed again later
                wait = supervised.failed(exc, at_least=wait)
                answered = False
            else:
                supervised.succeeded()
            if answered:
                self._probes.pop(url, None)
                self._outages[url].recovered()  # back in rotation
                return
            self._outages[url].failed("not answering a probe")

    async def close(self) -> None:
        """Stop every probe; every server counts as healthy again."""
        tasks = list(self._probes.values())
        self._probes.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
