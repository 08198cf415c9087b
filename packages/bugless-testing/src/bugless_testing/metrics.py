"""Read a running service's Prometheus ``/metrics`` as a scrape would, for assertions.

Tests that watch a real process (a call in flight, calls answered with a
code, an outage's gauge) read its own endpoint over HTTP rather than the
registry in memory: the process is another one, and what matters is what
a Prometheus server would see.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def metric_total(port: int | None, name: str, **labels: str) -> float:
    """The sum of sample ``name``'s values whose labels include ``labels``, scraped now.

    Args:
        port: The service's metrics port (``RunningService.metrics_port``).
        name: A sample name as exposed (``grpc_server_handled_total``: with
            a counter's ``_total``).
        **labels: Labels a sample must carry with these values
            (``grpc_method="Watch"``); others are summed over.

    Raises:
        AssertionError: The service was started without a metrics port.
        httpx.HTTPError: The endpoint did not answer 200.
    """
    assert port is not None, "the service was started without --metrics-port"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    response.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
