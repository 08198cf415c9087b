"""Settings of the s3 blob store, one declaration each (variable, default, help).

Credentials are not settings of bugless: the store uses the AWS SDK's own
chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, a
Kubernetes service account's web identity, an instance role), so whatever
the platform already provides works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bugless_core.errors import InvalidArgument
from bugless_core.settings import setting

MIB = 1024 * 1024
GIB = 1024 * MIB
#: S3's bounds on a part (of an upload or of a copy); the last part may be smaller.
MIN_PART_BYTES = 5 * MIB
MAX_PART_BYTES = 5 * GIB
SSE_MODES = ("", "AES256", "aws:kms")
ADDRESSING_STYLES = ("auto", "path", "virtual")


@dataclass(frozen=True)
class S3BlobSettings:
    """Where and how the s3 store keeps content (``BUGLESS_BLOB_STORE=s3``).

    Attributes:
        bucket: The bucket; it must exist (the store never creates buckets).
        prefix: Prepended to every key, so one bucket can serve several
            deployments or other data; empty or ending in ``/``.
        endpoint_url: An S3-compatible endpoint (MinIO, Ceph RGW, GCS's XML
            API, R2); empty for AWS itself.
        region: The bucket's region; empty for the SDK's default.
        addressing_style: ``path`` for most self-hosted stores, ``virtual``
            for AWS, ``auto`` to let the SDK decide.
        sse: Server-side encryption requested on every write: ``AES256``
            (keys managed by the store), ``aws:kms``, or empty for the
            bucket's default.
        kms_key_id: The KMS key for ``aws:kms``; empty for the account's
            default key.
        part_bytes: Multipart part size. Content up to this size is one PUT
            straight to its final key; larger content streams in parts of
            this size, about two parts in memory at a time.
        copy_part_bytes: Largest object moved by one server-side copy; larger
            ones (past S3's 5 GiB copy limit) are copied in parts of this size.
    """

    bucket: str = setting(env="BUGLESS_BLOB_S3_BUCKET", help="the bucket; it must exist")
    prefix: str = setting(
        env="BUGLESS_BLOB_S3_PREFIX",
        default="bugless/blobs/",
        help="prefix of every key; empty or ending in '/'",
    )
    endpoint_url: str = setting(
        env="BUGLESS_BLOB_S3_ENDPOINT_URL",
        default="",
        help="S3-compatible endpoint URL; empty for AWS",
    )
    region: str = setting(
        env="BUGLESS_BLOB_S3_REGION", default="", help="the bucket's region; empty for the default"
    )
    addressing_style: str = setting(
        env="BUGLESS_BLOB_S3_ADDRESSING_STYLE",
        default="auto",
        help="auto, path (most self-hosted stores) or virtual",
    )
    sse: str = setting(
        env="BUGLESS_BLOB_S3_SSE",
        default="",
        help="server-side encryption: empty (bucket default), AES256 or aws:kms",
    )
    kms_key_id: str = setting(
        env="BUGLESS_BLOB_S3_KMS_KEY_ID",
        default="",
        help="KMS key id or ARN for aws:kms; empty for the default key",
    )
    part_bytes: int = setting(
        env="BUGLESS_BLOB_S3_PART_BYTES",
        default=8 * MIB,
        help="multipart part size in bytes, 5 MiB to 5 GiB",
    )
    copy_part_bytes: int = setting(
        env="BUGLESS_BLOB_S3_COPY_PART_BYTES",
        default=5 * GIB,
        help="objects larger than this are copied in parts of this size, 5 MiB to 5 GiB",
    )

    def __post_init__(self) -> None:
        if not self.bucket:
            raise InvalidArgument("BUGLESS_BLOB_S3_BUCKET: the bucket name is empty")
        if self.prefix.startswith("/") or (self.prefix and not self.prefix.endswith("/")):
            msg = (
                f"BUGLESS_BLOB_S3_PREFIX: {self.prefix!r} must not start with '/' "
                "and must end with '/'"
            )
            raise InvalidArgument(msg)
        if self.addressing_style not in ADDRESSING_STYLES:
            msg = (
                f"BUGLESS_BLOB_S3_ADDRESSING_STYLE: {self.addressing_style!r} is not one of "
                f"{', '.join(ADDRESSING_STYLES)}"
            )
            raise InvalidArgument(msg)
        if self.sse not in SSE_MODES:
            msg = f"BUGLESS_BLOB_S3_SSE: {self.sse!r} is not AES256, aws:kms or empty"
            raise InvalidArgument(msg)
        if self.kms_key_id and self.sse != "aws:kms":
            msg = "BUGLESS_BLOB_S3_KMS_KEY_ID is set but BUGLESS_BLOB_S3_SSE is not aws:kms"
            raise InvalidArgument(msg)
        for name, value in (
            ("BUGLESS_BLOB_S3_PART_BYTES", self.part_bytes),
            ("BUGLESS_BLOB_S3_COPY_PART_BYTES", self.copy_part_bytes),
        ):
            if not MIN_PART_BYTES <= value <= MAX_PART_BYTES:
                msg = (
                    f"{name}: {value} is outside S3's part sizes, "
                    f"{MIN_PART_BYTES}..{MAX_PART_BYTES}"
                )
                raise InvalidArgument(msg)

    def encryption(self) -> dict[str, Any]:
        """The server-side encryption parameters of every write request (empty for none)."""
        if not self.sse:
            return {}
        params: dict[str, Any] = {"ServerSideEncryption": self.sse}
        if self.kms_key_id:
            params["SSEKMSKeyId"] = self.kms_key_id
        return params
