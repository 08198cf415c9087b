"""What the Model spends deriving a caller from an identity assertion, per request.

Run from the repository root::

    python -m bench.assertions [--calls 200000]

Measures, in this process (CPU time, ``time.process_time``), the work the
Model adds to every call with a caller (:mod:`bugless_core.model._callers`):
reading the ``bugless-assertion`` metadata, the verifier's cached path (one
dictionary look-up, the expiry, key and revocation checks) and building the
``Caller``; and, separately, a first sight of an assertion (the Ed25519
signature check and JSON decoding), which happens once per assertion — once
per user and frontend replica every few minutes. Compare with the Model's CPU
per GetIssue in README.md (``bench.api``, column ``model``).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bugless_core.assertions import AssertionVerifier, key_id, sign_assertion
from bugless_proto import v1


def _keys(key: Ed25519PrivateKey) -> v1.VerificationKeys:
    public = key.public_key()
    return v1.VerificationKeys(
        keys=[v1.VerificationKey(kid=key_id(public), ed25519_public_key=public.public_bytes_raw())]
    )


async def _measure(calls: int) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    answer = _keys(key)

    async def fetch() -> v1.VerificationKeys:
        return answer

    verifier = AssertionVerifier(fetch, refresh_seconds=3600)
    assertion, _ = sign_assertion(
        key,
        user_id="u_0123456789abcdef",
        groups=["eng", "billing", "oncall"],
        permissions=["create_hotlist"],
        session_id="s_0123456789abcdef01234567",
        issuer="bugless-auth",
    )
    await verifier.claims(assertion)

    start = time.process_time()
    for _ in range(calls):
        (await verifier.claims(assertion)).caller()
    cached = (time.process_time() - start) / calls

    fresh = [
        sign_assertion(
            key,
            user_id=f"u{n}",
            groups=["eng"],
            permissions=[],
            session_id=f"s{n}",
            issuer="bugless-auth",
        )[0]
        for n in range(min(calls, 20_000))
    ]
    start = time.process_time()
    for text in fresh:
        (await verifier.claims(text)).caller()
    first = (time.process_time() - start) / len(fresh)
    return cached, first


def main() -> None:
    """Print microseconds of CPU per verification, cached and first sight."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    cached, first = asyncio.run(_measure(args.calls))
    print(f"cached assertion (every call):   {cached * 1e6:7.2f} µs CPU")
    print(f"first sight (signature checked): {first * 1e6:7.2f} µs CPU")


if __name__ == "__main__":
    main()
