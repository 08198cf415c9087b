"""The first error a fresh client process receives keeps its details.

grpclib decodes ``grpc-status-details-bin`` when the status arrives, looking
each detail's type up in protobuf's default pool: a detail whose message
module was never imported is dropped. ``bugless_core.errors`` imports
``google.rpc.error_details_pb2`` lazily (so ``bugless --help`` loads no
protobuf), so the gRPC layer must have it imported before any status is
decoded, or a bot's first version conflict, size limit or DRAINING refusal
would arrive as a bare status. The server runs in a process of its own and
the client in another, both fresh, because one import anywhere in a process
(the server's own ``to_grpc_error``, an earlier test) hides the defect.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from grpc_test_server import FAIL_KEY, SOURCES, ServerProcess

CLIENT = """
import asyncio, json, sys
from grpclib.exceptions import GRPCError
from bugless_core.clients import ServiceAddress
from bugless_core.errors import from_grpc_error
from bugless_proto import v1

async def main() -> None:
    channel = ServiceAddress.parse(sys.argv[1]).channel()
    try:
        await v1.ModelStub(channel).get_server_info(timeout=10, metadata={sys.argv[2]: "conflict"})
    except GRPCError as exc:
        error = from_grpc_error(exc)
        print(json.dumps({
            "details": len(exc.details or ()),
            "type": type(error).__name__,
            "current_version": getattr(error, "current_version", None),
        }))
    finally:
        channel.close()

asyncio.run(main())
"""


async def test_a_fresh_clients_first_error_carries_its_details(
    server_process: ServerProcess,
) -> None:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [*map(str, SOURCES), environment.get("PYTHONPATH", "")]
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        f"127.0.0.1:{server_process.port}",
        FAIL_KEY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {
        "details": 1,
        "type": "IssueVersionConflict",
        "current_version": 5,
    }
