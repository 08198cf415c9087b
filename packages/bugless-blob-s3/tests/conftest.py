"""Fixtures: one real S3-compatible server (moto, server mode) per session, one bucket.

What test modules import is in ``s3_support``, not here (see that module).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session
from s3_support import StoreOpener, settings_on

from bugless_blob_s3 import S3BlobStore
from bugless_testing.s3 import REGION, S3TestServer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

pytest_plugins = ["bugless_testing.s3", "bugless_testing.plugin", "bugless_testing.postgres"]

BUCKET = "bugless-blobs-test"


@pytest.fixture(scope="session", autouse=True)
def aws_environment(
    s3_server: S3TestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Credentials for the SDK's default chain, and no configuration from the machine."""
    absent = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.environ().items():
            patch.setenv(name, value)
        patch.setenv("AWS_CONFIG_FILE", str(absent))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(absent))
        yield


@pytest.fixture(scope="session")
async def s3_client(s3_server: S3TestServer) -> AsyncIterator[S3Client]:
    """A plain client on the server, to look at what the store wrote."""
    async with get_session().create_client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=REGION
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def bucket(s3_client: S3Client) -> str:
    """The session's bucket."""
    await s3_client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
async def open_store(s3_server: S3TestServer, bucket: str) -> AsyncIterator[StoreOpener]:
    """Connects stores (fresh prefix, settings overrides); closes them after the test."""
    opened: list[S3BlobStore] = []

    async def connect(**overrides: Any) -> S3BlobStore:
        store = await S3BlobStore.connect(settings_on(s3_server, bucket, **overrides))
        opened.append(store)
        return store

    yield connect
    for store in opened:
        await store.close()
