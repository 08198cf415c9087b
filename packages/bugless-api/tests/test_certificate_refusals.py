"""What a refused certificate's holder hears from the API: their fault, not the mapping's contents.

The API used to answer every refusal but an expired or revoked certificate
with "certificate subject X is not mapped to a bugless user", so a bot whose
certificate came from a CA the tls backend does not trust (the API's bundle
had the new bot CA, the Authenticator's ``ca_file`` not yet), or whose user
was disabled, was sent to a mapping that names it. It now says those reasons,
which are facts of the holder's own certificate or account, and still says
"not mapped" for anything that would tell which names the mapping holds. Real
stack (PostgreSQL, Model, Authenticator), a real API over mutual TLS, trustme
and the stack's PKI.
"""

from __future__ import annotations

import dataclasses
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from api_support import Bots, api_settings
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client import CollectorRegistry

from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings
from bugless_core.errors import from_grpc_error
from bugless_core.grpc import build_client_ssl_context
from bugless_dev.stack import LocalStack
from bugless_proto import v1


@pytest.fixture(scope="module")
def new_bots_ca() -> trustme.CA:
    """A bot CA the API's handshake trusts and the tls backend's ca_file does not (yet)."""
    return trustme.CA(organization_name="New Bots CA")


@pytest.fixture
async def api_trusting_both(
    bots: Bots, new_bots_ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[RunningApi]:
    """An API whose ``--client-ca`` holds the stack's CA and the new bot CA (a rotation's step 2
    done at the API only)."""
    bundle = tmp_path / "client-ca.pem"
    bundle.write_bytes(bots.stack.pki.ca_file.read_bytes() + new_bots_ca.cert_pem.bytes())
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=10_000.0, burst=10_000))
    settings = dataclasses.replace(
        settings, grpc=dataclasses.replace(settings.grpc, client_ca=bundle)
    )
    running = await start_api(settings, metrics_registry=CollectorRegistry())
    try:
        yield running
    finally:
        await running.close()


def context_for(stack: LocalStack, leaf: trustme.LeafCert, directory: Path) -> ssl.SSLContext:
    cert, key = directory / "cert.pem", directory / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return build_client_ssl_context(stack.pki.ca_file, cert, key)


async def refusal(port: int, context: ssl.SSLContext) -> GRPCError:
    channel = Channel("127.0.0.1", port, ssl=context)
    try:
        with pytest.raises(GRPCError) as caught:
            await v1.AccountStub(channel).who_am_i(v1.WhoAmIRequest(), timeout=10)
    finally:
        channel.close()
    assert caught.value.status is Status.UNAUTHENTICATED
    return caught.value


async def test_a_certificate_of_a_ca_the_tls_backend_does_not_trust_is_told_so_mapped_or_not(
    api_trusting_both: RunningApi,
    bugless_stack: LocalStack,
    new_bots_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """A mapped CN and an unmapped one of the new CA hear the same reason, naming their
    issuer: the fix (the CA in ca_file), and nothing of what the mapping holds."""
    mapped_cn, unmapped_cn = (f"{n}-{secrets.token_hex(3)}" for n in ("rotated", "unknown"))
    bugless_stack.pki.map_subject(mapped_cn, mapped_cn)
    answers: list[str] = []
    for cn in (mapped_cn, unmapped_cn):
        directory = tmp_path / cn
        directory.mkdir()
        leaf = new_bots_ca.issue_cert(f"{cn}.invalid", common_name=cn)
        error = await refusal(api_trusting_both.port, context_for(bugless_stack, leaf, directory))
        assert from_grpc_error(error).reason == "CERTIFICATE_UNTRUSTED"
        message = error.message or ""
        assert message.startswith(f"certificate subject CN={cn},")
        assert "is not signed by a CA in the tls authenticator's ca_file" in message
        assert "O=New Bots CA" in message
        assert "not mapped" not in message
        answers.append(message.partition(" is not signed by ")[2])  # after the subject
    assert answers[0] == answers[1]


async def test_a_certificate_whose_user_is_disabled_is_told_so(
    api_trusting_both: RunningApi, bugless_stack: LocalStack
) -> None:
    username = f"disabled-bot-{secrets.token_hex(3)}"
    files = bugless_stack.pki.client_certificate_for(username)
    context = build_client_ssl_context(bugless_stack.pki.ca_file, files.cert, files.key)
    channel = Channel("127.0.0.1", api_trusting_both.port, ssl=context)
    try:
        identity = await v1.AccountStub(channel).who_am_i(v1.WhoAmIRequest(), timeout=10)
    finally:
        channel.close()
    assert identity.user is not None
    assert identity.user.username == username

    bugless_stack.run_bugless("auth", "user", "disable", username)
    error = await refusal(api_trusting_both.port, context)
    assert from_grpc_error(error).reason == "USER_DISABLED"
    assert "disabled" in (error.message or "")
    assert "not mapped" not in (error.message or "")


async def test_a_certificate_mapped_to_another_backends_username_hears_only_not_mapped(
    api_trusting_both: RunningApi, bugless_stack: LocalStack
) -> None:
    """Which usernames exist, and that the mapping names one, stay hidden: the holder hears
    "not mapped" (the API's log has the Authenticator's USERNAME_TAKEN)."""
    person = f"person-{secrets.token_hex(3)}"
    bugless_stack.add_user(person, "a long enough password")
    files = bugless_stack.pki.client_certificate_for(person, common_name=f"{person}.imposter")
    context = build_client_ssl_context(bugless_stack.pki.ca_file, files.cert, files.key)
    error = await refusal(api_trusting_both.port, context)
    assert (error.message or "").endswith("is not mapped to a bugless user")
    assert person not in (error.message or "").replace(f"{person}.imposter", "")
    assert from_grpc_error(error).reason == "CERTIFICATE_NOT_MAPPED"
