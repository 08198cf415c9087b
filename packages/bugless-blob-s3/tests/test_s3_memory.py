"""A fresh process streams 200 MiB through the s3 store; its RSS hardly grows."""

from __future__ import annotations

import os

from bugless_testing.blob_contracts.probe import MIB, run_probe
from bugless_testing.s3 import REGION, S3TestServer


def test_streaming_200_mib_up_and_down_keeps_the_process_small(
    s3_server: S3TestServer, bucket: str
) -> None:
    environ = {
        **os.environ,
        **s3_server.environ(),
        "BUGLESS_BLOB_STORE": "s3",
        "BUGLESS_BLOB_S3_BUCKET": bucket,
        "BUGLESS_BLOB_S3_PREFIX": "memory/",
        "BUGLESS_BLOB_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "BUGLESS_BLOB_S3_REGION": REGION,
        "BUGLESS_BLOB_S3_ADDRESSING_STYLE": "path",
    }
    result = run_probe(environ, 200 * MIB)
    print(  # the figures, for the record (-s)
        f"s3: up {result.up_mib_per_second:.0f} MiB/s, down "
        f"{result.down_mib_per_second:.0f} MiB/s, RSS {result.baseline_rss / MIB:.0f} MiB "
        f"before, {result.transfer_peak_rss / MIB:.0f} MiB at most during the transfer, "
        f"lifetime peak {result.peak_rss / MIB:.0f} MiB"
    )
    assert result.size == 200 * MIB
    # About two 8 MiB parts, plus the client's buffers: nowhere near 200 MiB.
    assert result.transfer_growth < 40 * MIB
    assert result.peak_rss < 150 * MIB
