"""Only the services that move attachments offer ``--drain-transfer-seconds``.

The Model and the API wait that long for uploads and downloads when they
drain; the Authenticator and the notifier have none, so the flag (and its
variable) would change nothing there. The local stack, which sets every
service's drain as a chart would, must not hand it to them either.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bugless_core.cli import build_cli
from bugless_core.plugins import load_plugins
from bugless_dev._stack_config import SERVICE_KINDS, StackConfig, stack_environment
from bugless_dev.pki import LocalPki

FLAG = "--drain-transfer-seconds"


def _serve_help(kind: str) -> str:
    result = CliRunner().invoke(build_cli(load_plugins()), [kind, "serve", "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("kind", ["model", "api"])
def test_the_services_with_transfers_offer_the_flag(kind: str) -> None:
    assert FLAG in _serve_help(kind)


@pytest.mark.parametrize("kind", ["auth", "notify"])
def test_the_services_without_transfers_do_not(kind: str) -> None:
    text = _serve_help(kind)
    assert "--grace-seconds" in text  # the drain flags they do take
    assert FLAG not in text


def test_the_local_stack_sets_the_bound_only_where_it_is_read(tmp_path: Path) -> None:
    config = StackConfig(
        directory=tmp_path,
        pki=LocalPki.open(tmp_path / "pki"),
        model_database_url="postgresql://localhost/model",
        auth_database_url="postgresql://localhost/auth",
        transfer_seconds=30.0,
        token_key_file=tmp_path / "token.key",
        insecure_local=True,
    )
    env = stack_environment(config, {})
    given = {
        kind for kind in SERVICE_KINDS if f"BUGLESS_{kind.upper()}_DRAIN_TRANSFER_SECONDS" in env
    }
    assert given == {"model", "api", "web"}
    assert env["BUGLESS_API_DRAIN_TRANSFER_SECONDS"] == "30.0"


def test_by_default_the_local_stack_leaves_each_service_its_own_bound(tmp_path: Path) -> None:
    """As a deployment: a stack's transfers are not cut at its 5 s grace (test_stack_drain)."""
    config = StackConfig(
        directory=tmp_path,
        pki=LocalPki.open(tmp_path / "pki"),
        model_database_url="postgresql://localhost/model",
        auth_database_url="postgresql://localhost/auth",
        token_key_file=tmp_path / "token.key",
        insecure_local=True,
    )
    env = stack_environment(config, {})
    assert not [name for name in env if name.endswith("_DRAIN_TRANSFER_SECONDS")]
    assert env["BUGLESS_MODEL_GRACE_SECONDS"] == "5.0"
