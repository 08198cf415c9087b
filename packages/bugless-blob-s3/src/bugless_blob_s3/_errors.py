"""Turning S3 client errors into bugless errors, in one place.

Callers of the store see :mod:`bugless_core.errors` only: a store that
cannot be reached is Unavailable (retry later), a bucket or credentials that
are wrong are FailedPrecondition (an operator must act), and a missing key is
reported by the functions here as "absent" so the store can decide whether
that is NotFound or simply "not stored yet".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from bugless_core.errors import BuglessError, FailedPrecondition, Unavailable

#: Codes S3 and its imitators use for "no such key" (HEAD has no body, hence "404").
_ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})
_MISCONFIGURED = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "KMS.NotFoundException",
        "KMS.DisabledException",
    }
)
_TRANSIENT = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)


def error_code(exc: ClientError) -> str:
    """The S3 error code of ``exc`` ("NoSuchKey", "404", ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_absent(exc: ClientError) -> bool:
    """Whether ``exc`` says the key is not there."""
    return error_code(exc) in _ABSENT


@contextlib.contextmanager
def translated_errors(bucket: str) -> Iterator[None]:
    """Re-raise S3 and transport errors as bugless errors naming ``bucket``."""
    try:
        yield
    except BuglessError:
        raise
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code in _MISCONFIGURED:
            msg = (
                f"the object store refused access to bucket {bucket!r} ({code}: {message}); "
                "check BUGLESS_BLOB_S3_BUCKET, the region and the credentials"
            )
            raise FailedPrecondition(msg) from exc
        if code in _TRANSIENT:
            msg = f"the object store is unavailable ({code}: {message}); retry"
            raise Unavailable(msg) from exc
        msg = f"the object store failed a request on bucket {bucket!r} ({code}: {message})"
        raise BuglessError(msg) from exc
    except NoCredentialsError as exc:
        msg = (
            "no credentials for the object store: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or give the pod a role"
        )
        raise FailedPrecondition(msg) from exc
    except (
        BotoConnectionError,
        HTTPClientError,
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise Unavailable(f"the object store is unreachable: {exc}") from exc
    except BotoCoreError as exc:
        msg = f"the object store client failed on bucket {bucket!r}: {exc}"
        raise BuglessError(msg) from exc
