"""An LDAP provider and a read replica replicating it (syncrepl), on loopback.

The shape of a production directory with read replicas: the *provider* takes
writes and runs the ``syncprov`` overlay; the *consumer* replicates it with
``syncrepl`` in ``refreshAndPersist`` mode (one long-lived search the provider
pushes every change down) and refers writes back to the provider
(``updateref``). The consumer binds to the provider as a replicator account
that may read every attribute, password hashes included, so users can bind
on the replica with their passwords.

The pair is started and seeded once per session (:func:`slapd_replicas`);
the provider is seeded over the wire and the consumer receives everything by
replication. Tests that stop the provider use :func:`replicas`, which leaves
it running and caught up again for the next test, whatever the test did.

Replication is waited for by comparing ``contextCSN`` (the change sequence
number of the newest change a server holds, kept on the suffix entry): once
the consumer's is at least the provider's, every change made on the provider
before the comparison is readable on the consumer. No blind sleeps.

Self-contained apart from ``slapd.py`` (meant to move, with it, into a test
support package). Debian packages: ``slapd``, ``ldap-utils``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from bugless_testing.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    BASE_DN,
    REPLICATOR_DN,
    REPLICATOR_PASSWORD,
    Slapd,
    new_slapd,
    seed,
)

LDAPSEARCH = shutil.which("ldapsearch") or "/usr/bin/ldapsearch"

#: How often the consumer reconnects to a provider that went away, in seconds.
RETRY_SECONDS = 1


def _provider_database() -> str:
    return """index entryCSN,entryUUID eq
overlay memberof
memberof-refint TRUE
overlay syncprov
syncprov-checkpoint 100 1
syncprov-sessionlog 1000
"""


def _consumer_database(provider: Slapd) -> str:
    # memberOf values arrive with the entries (the provider's overlay wrote
    # them); the consumer only needs the attribute type, which loading the
    # memberof module defines, and must not run the overlay a second time.
    return f"""index entryCSN,entryUUID eq
syncrepl rid=001
  provider={provider.replication_url}
  type=refreshAndPersist
  searchbase="{BASE_DN}"
  scope=sub
  attrs="*,+"
  bindmethod=simple
  binddn="{REPLICATOR_DN}"
  credentials={REPLICATOR_PASSWORD}
  retry="{RETRY_SECONDS} +"
  timeout=3
  network-timeout=3
updateref {provider.url}
"""


def context_csns(server: Slapd, *, timeout: float = 2.0) -> dict[str, str]:
    """The server's ``contextCSN`` values by server id (``{}`` before any write).

    A CSN is ``YYYYmmddHHMMSS.uuuuuuZ#count#sid#mod``: fixed width, so one
    server id's CSNs order as strings.
    """
    result = subprocess.run(
        [
            *(LDAPSEARCH, "-x", "-LLL", "-H", server.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD),
            *("-o", f"nettimeout={timeout:g}", "-l", f"{max(1, round(timeout))}"),
            *("-s", "base", "-b", BASE_DN, "contextCSN"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout + 2,
    )
    if result.returncode == 32:  # noSuchObject: the consumer has not received the suffix yet
        return {}
    if result.returncode != 0:
        raise RuntimeError(f"ldapsearch on {server.url} failed: {result.stderr.strip()}")
    csns: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.lower().startswith("contextcsn:"):
            csn = line.split(":", 1)[1].strip()
            csns[csn.split("#")[2]] = csn
    return csns


def caught_up(provider_csns: dict[str, str], consumer_csns: dict[str, str]) -> bool:
    """Whether the consumer holds every change the provider's CSNs stand for."""
    return all(consumer_csns.get(sid, "") >= csn for sid, csn in provider_csns.items())


@dataclass
class ReplicaPair:
    """A provider and its syncrepl consumer.

    Attributes:
        provider: Takes writes; tests pause, kill and restart it.
        consumer: The read replica.
    """

    provider: Slapd
    consumer: Slapd

    @property
    def urls(self) -> tuple[str, str]:
        """Provider first, then the replica: the order a deployment lists them."""
        return (self.provider.url, self.consumer.url)

    def wait_replicated(self, timeout: float = 15.0) -> None:
        """Block until the consumer holds every change the provider has now.

        Raises:
            TimeoutError: the consumer did not catch up within ``timeout``.
        """
        target = context_csns(self.provider)
        deadline = time.monotonic() + timeout
        while True:
            seen = context_csns(self.consumer)
            if caught_up(target, seen):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the consumer is at {seen} after {timeout:g} s, the provider at {target}: "
                    f"{self.consumer.log}"
                )
            time.sleep(0.02)

    async def await_replicated(self, within: float = 15.0) -> None:
        """:meth:`wait_replicated` off the event loop (an Authenticator may share it)."""
        await asyncio.to_thread(self.wait_replicated, within)

    def write_heartbeat(self) -> None:
        """Change the suffix entry on the provider (a write that touches no user)."""
        self.provider.ldapmodify(
            f"dn: {BASE_DN}\nchangetype: modify\nreplace: description\n"
            f"description: heartbeat {time.time_ns()}\n"
        )

    def restore(self) -> None:
        """Leave the provider running and the consumer replicating it, caught up.

        The contextCSNs alone could already match while the consumer has not
        yet reconnected to a restarted provider (it retries every
        :data:`RETRY_SECONDS`); a fresh write it must receive proves the
        replication session is up again, so a later test that pauses the
        provider sees no reconnect from the consumer.
        """
        if self.provider.running:
            self.provider.resume()
        else:
            self.provider.start()
        if not self.consumer.running:
            self.consumer.start()
        self.write_heartbeat()
        self.wait_replicated()


@contextlib.contextmanager
def start_replica_pair(
    ca: trustme.CA | None = None, *, log_operations: bool = True
) -> Iterator[ReplicaPair]:
    """Start a seeded provider and a consumer that has replicated it; stop both after.

    With ``log_operations`` (the default) each server logs every operation,
    so a test can tell which one served a sign-in; a benchmark turns it off.
    """
    ca = ca or trustme.CA()
    with tempfile.TemporaryDirectory(prefix="bugless-slapd-pair-") as tmp:
        root = Path(tmp)
        provider = new_slapd(
            root / "provider",
            ca,
            log_operations=log_operations,
            modules=("memberof", "syncprov"),
            database=_provider_database(),
        )
        consumer: Slapd | None = None
        try:
            provider.start()
            seed(provider)
            consumer = new_slapd(
                root / "consumer",
                ca,
                log_operations=log_operations,
                modules=("memberof",),
                database=_consumer_database(provider),
            )
            consumer.start()
            pair = ReplicaPair(provider, consumer)
            pair.wait_replicated()
            yield pair
        finally:
            if consumer is not None:
                consumer.close()
            provider.close()


@pytest.fixture(scope="session")
def slapd_replicas() -> Iterator[ReplicaPair]:
    """The session's provider and consumer (seeded like ``slapd_server``)."""
    with start_replica_pair() as pair:
        yield pair


@pytest.fixture
def replicas(slapd_replicas: ReplicaPair) -> Iterator[ReplicaPair]:
    """The session's pair, for a test that may pause or kill the provider.

    Whatever the test did, the provider is running and the consumer caught
    up before the next test.
    """
    slapd_replicas.restore()
    yield slapd_replicas
    slapd_replicas.restore()


__all__ = [
    "RETRY_SECONDS",
    "ReplicaPair",
    "caught_up",
    "context_csns",
    "replicas",
    "slapd_replicas",
    "start_replica_pair",
]
