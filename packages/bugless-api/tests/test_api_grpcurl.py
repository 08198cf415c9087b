"""Reflection and calls as grpcurl (a client we did not write) sees them, over mTLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

from api_support import Bots

from bugless_api.server import RunningApi

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


async def grpcurl(api: RunningApi, bots: Bots, *args: str, data: object = None) -> str:
    files = bots["robot"]
    flags = ["-d", json.dumps(data)] if data is not None else []
    process = await asyncio.create_subprocess_exec(
        GRPCURL,
        "-cacert",
        str(bots.stack.pki.ca_file),
        "-cert",
        str(files.cert),
        "-key",
        str(files.key),
        *flags,
        f"127.0.0.1:{api.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_list_shows_the_five_public_services(api: RunningApi, bots: Bots) -> None:
    services = set((await grpcurl(api, bots, "list")).split())

    assert {
        "bugless.v1.Account",
        "bugless.v1.Issues",
        "bugless.v1.Components",
        "bugless.v1.Hotlists",
        "bugless.v1.SavedSearches",
        "bugless.v1.Notifications",
        "grpc.health.v1.Health",
    } <= services
    assert "bugless.v1.Model" not in services


async def test_describe_shows_the_query_search_request(api: RunningApi, bots: Bots) -> None:
    described = await grpcurl(api, bots, "describe", "bugless.v1.Issues.SearchIssues")

    assert "QuerySearchRequest" in described


async def test_calls_work_with_a_client_certificate(api: RunningApi, bots: Bots) -> None:
    me = json.loads(await grpcurl(api, bots, "bugless.v1.Account/WhoAmI"))
    assert me["user"]["username"] == "robot"

    found = json.loads(
        await grpcurl(api, bots, "bugless.v1.Issues/SearchIssues", data={"query": "is:open"})
    )
    assert "totalCount" in found or found == {}

    health = json.loads(await grpcurl(api, bots, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}
