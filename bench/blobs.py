"""Blob stores: MiB/s up and down and peak RSS, streaming one large blob through each.

    python -m bench.blobs [--size-mib 200] [--runs 3] [--store database --store s3]

Starts a throwaway PostgreSQL (the ``database`` store, in a migrated Model
schema) and an S3-compatible server on loopback (``moto`` in server mode, the
``s3`` store), then for each store runs the probe
(:mod:`bugless_testing.blob_contracts.probe`) in a fresh process: it
opens the store from the environment exactly as a service does, streams the
blob up from generated chunks, reads it back while hashing it, deletes it, and
reports times and RSS. Each store is measured ``--runs`` times; the table shows
the median of the speeds and the highest RSS. Both servers run on this
machine, so the figures include their CPU; moto keeps objects in Python and is
far slower than a real object store (a floor for ``s3``, not a forecast).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from bugless_core.model.backend import ModelSettings
from bugless_dev.postgres import start_postgres
from bugless_model_postgres import PostgresBackend
from bugless_testing.blob_contracts.probe import MIB, ProbeResult, run_probe
from bugless_testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server

SCHEMA = "bench_blobs"
BUCKET = "bench-blobs"


async def _create_bucket(endpoint_url: str) -> None:
    from aiobotocore.session import get_session  # noqa: PLC0415 - only with bugless-blob-s3

    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as client:
        await client.create_bucket(Bucket=BUCKET)


def _row(name: str, results: list[ProbeResult]) -> str:
    up = statistics.median(r.up_mib_per_second for r in results)
    down = statistics.median(r.down_mib_per_second for r in results)
    before = max(r.baseline_rss for r in results) / MIB
    growth = max(r.transfer_growth for r in results) / MIB
    peak = max(r.peak_rss for r in results) / MIB
    return (
        f"| {name} | {results[0].size // MIB} | {up:.0f} | {down:.0f} | {before:.0f} | "
        f"{growth:.0f} | {peak:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=200, help="blob size (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="probes per store (default 3)")
    parser.add_argument(
        "--store",
        action="append",
        choices=["database", "s3"],
        help="measure only this store (repeatable); default both",
    )
    args = parser.parse_args()
    stores = args.store or ["database", "s3"]
    size = args.size_mib * MIB

    postgres = start_postgres() if "database" in stores else None
    s3 = start_s3_server() if "s3" in stores else None
    try:
        environments: dict[str, dict[str, str]] = {}
        if postgres is not None:
            url = postgres.create_database("bench_blobs")
            asyncio.run(
                PostgresBackend.migrate(
                    ModelSettings(database_url=url, page_token_secret="-" * 16, schema=SCHEMA)
                )
            )
            environments["database"] = {
                "BUGLESS_BLOB_STORE": "database",
                "BUGLESS_DATABASE_URL": url,
                "BUGLESS_DATABASE_SCHEMA": SCHEMA,
            }
        if s3 is not None:
            asyncio.run(_create_bucket(s3.endpoint_url))
            environments["s3"] = {
                **s3.environ(),
                "BUGLESS_BLOB_STORE": "s3",
                "BUGLESS_BLOB_S3_BUCKET": BUCKET,
                "BUGLESS_BLOB_S3_ENDPOINT_URL": s3.endpoint_url,
                "BUGLESS_BLOB_S3_REGION": REGION,
                "BUGLESS_BLOB_S3_ADDRESSING_STYLE": "path",
            }
        print(
            "| store | MiB | up MiB/s | down MiB/s | RSS before (MiB) | "
            "growth during transfer (MiB) | lifetime peak RSS (MiB) |"
        )
        print("|---|---|---|---|---|---|---|")
        for name in stores:
            results = []
            for _ in range(args.runs):
                results.append(run_probe({**os.environ, **environments[name]}, size))
            print(_row(name, results), flush=True)
    finally:
        if s3 is not None:
            s3.stop()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
