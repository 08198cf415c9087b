"""``health_until``: what its failure says about the server it asked."""

from __future__ import annotations

import pytest

from bugless_core.service_address import ServiceAddress
from bugless_testing.health import health_until
from bugless_testing.ports import refused_port


async def test_an_ipv6_server_that_never_answers_is_named_with_its_host_in_brackets() -> None:
    """Before: 'model at ::1:PORT answered None', which reads as one address."""
    with refused_port("::1") as port, pytest.raises(AssertionError) as failed:
        await health_until(ServiceAddress("::1", port), "bugless.v1.Model", "SERVING", seconds=0.5)
    assert str(failed.value) == (
        f"bugless.v1.Model at [::1]:{port} answered None, not SERVING, for 0.5 s"
    )
