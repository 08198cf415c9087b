"""The per-server circuit breakers of the LDAP backend, as logic.

The probe here is a function the test controls, so each rule is shown on its
own: the real probe (a service-account bind against slapd) and the failover
it drives are tested in test_ldap_replicas.py against two real slapd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from bugless_auth._ldap_breaker import ServerBreakers

PRIMARY, REPLICA_1, REPLICA_2 = "ldap://primary", "ldap://replica-1", "ldap://replica-2"
URLS = (PRIMARY, REPLICA_1, REPLICA_2)
RETRY = 0.05


class ScriptedProbe:
    """Answers probes as the test says, and records every one."""

    def __init__(self) -> None:
        self.answering: set[str] = set()
        self.probed: list[str] = []
        self.called = asyncio.Event()

    async def __call__(self, url: str) -> bool:
        self.probed.append(url)
        self.called.set()
        return url in self.answering

    async def next_probe(self) -> None:
        """Wait for the next probe; the breaker has acted on its answer when this returns.

        The probe loop acts on the answer in the same step that set the event,
        before the waiting test runs again.
        """
        self.called.clear()
        await asyncio.wait_for(self.called.wait(), 5)


@pytest.fixture
def probe() -> ScriptedProbe:
    return ScriptedProbe()


@pytest.fixture
async def breakers(probe: ScriptedProbe) -> AsyncIterator[ServerBreakers]:
    made = ServerBreakers(URLS, retry_seconds=RETRY, probe=probe)
    yield made
    await made.close()


def test_healthy_servers_are_tried_in_configured_order(breakers: ServerBreakers) -> None:
    assert breakers.order() == list(URLS)
    assert breakers.open_servers == ()


def test_a_preferred_healthy_server_goes_first(breakers: ServerBreakers) -> None:
    assert breakers.order(prefer=REPLICA_2) == [REPLICA_2, PRIMARY, REPLICA_1]
    assert breakers.order(prefer="ldap://not-configured") == list(URLS)


async def test_a_failed_server_is_skipped_until_every_healthy_one(
    breakers: ServerBreakers,
) -> None:
    breakers.record_failure(PRIMARY, TimeoutError())

    assert breakers.is_open(PRIMARY)
    assert breakers.order() == [REPLICA_1, REPLICA_2, PRIMARY]
    # Preferring a skipped server does not put it first: it is the one that hangs.
    assert breakers.order(prefer=PRIMARY) == [REPLICA_1, REPLICA_2, PRIMARY]


async def test_open_servers_stay_last_in_configured_order(breakers: ServerBreakers) -> None:
    breakers.record_failure(REPLICA_2, OSError())
    breakers.record_failure(PRIMARY, OSError())

    assert breakers.order() == [REPLICA_1, PRIMARY, REPLICA_2]
    assert breakers.open_servers == (PRIMARY, REPLICA_2)


async def test_no_probe_before_the_retry_time(probe: ScriptedProbe) -> None:
    breakers = ServerBreakers(URLS, retry_seconds=60, probe=probe)
    breakers.record_failure(PRIMARY, TimeoutError())
    await asyncio.sleep(0.1)
    await breakers.close()
    assert probe.probed == []


async def test_a_server_that_answers_a_probe_rejoins_at_its_place(
    breakers: ServerBreakers, probe: ScriptedProbe
) -> None:
    breakers.record_failure(PRIMARY, TimeoutError())
    probe.answering.add(PRIMARY)

    await probe.next_probe()

    assert probe.probed == [PRIMARY]
    assert breakers.order() == list(URLS)


async def test_a_server_that_does_not_answer_is_probed_again_and_stays_skipped(
    breakers: ServerBreakers, probe: ScriptedProbe
) -> None:
    breakers.record_failure(PRIMARY, TimeoutError())
    await probe.next_probe()
    await probe.next_probe()

    assert probe.probed[:2] == [PRIMARY, PRIMARY]
    assert breakers.order() == [REPLICA_1, REPLICA_2, PRIMARY]

    probe.answering.add(PRIMARY)
    await probe.next_probe()
    assert not breakers.is_open(PRIMARY)


async def test_repeated_failures_keep_one_probe(
    breakers: ServerBreakers, probe: ScriptedProbe
) -> None:
    for _ in range(20):
        breakers.record_failure(PRIMARY, TimeoutError())
    await probe.next_probe()

    # One probe loop, not twenty probing at once.
    assert probe.probed == [PRIMARY]


async def test_a_request_that_succeeds_on_an_open_server_closes_it(
    breakers: ServerBreakers, probe: ScriptedProbe
) -> None:
    breakers.record_failure(PRIMARY, TimeoutError())

    breakers.record_success(PRIMARY)

    assert breakers.order() == list(URLS)
    probed = len(probe.probed)
    await asyncio.sleep(RETRY * 3)
    assert len(probe.probed) == probed  # its probe was stopped


async def test_a_probe_that_raises_counts_as_no_answer() -> None:
    calls: list[str] = []
    second = asyncio.Event()

    async def broken(url: str) -> bool:
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError("probe bug")
        second.set()
        return True

    # Counted where the Authenticator's /metrics reads (the process registry).
    labels = {"loop": f"auth.ldap_probe:{PRIMARY}"}
    flaky = ServerBreakers(URLS, retry_seconds=RETRY, probe=broken)
    before = REGISTRY.get_sample_value("bugless_background_failures_total", labels) or 0.0
    flaky.record_failure(PRIMARY, TimeoutError())
    assert flaky.is_open(PRIMARY)
    await asyncio.wait_for(second.wait(), 5)
    assert calls == [PRIMARY, PRIMARY]
    assert not flaky.is_open(PRIMARY)
    assert REGISTRY.get_sample_value("bugless_background_failures_total", labels) == before + 1
    assert REGISTRY.get_sample_value("bugless_background_consecutive_failures", labels) == 0
    await flaky.close()


async def test_close_stops_every_probe(probe: ScriptedProbe) -> None:
    breakers = ServerBreakers(URLS, retry_seconds=RETRY, probe=probe)
    breakers.record_failure(PRIMARY, TimeoutError())
    breakers.record_failure(REPLICA_1, TimeoutError())
    await probe.next_probe()

    await breakers.close()

    probed = len(probe.probed)
    await asyncio.sleep(RETRY * 3)
    assert len(probe.probed) == probed
    assert breakers.open_servers == ()


def test_the_retry_time_must_be_positive(probe: ScriptedProbe) -> None:
    with pytest.raises(ValueError, match="retry_seconds"):
        ServerBreakers(URLS, retry_seconds=0, probe=probe)
