"""What a local stack runs with, and the one environment map every service gets from it.

:class:`StackConfig` is what a caller of :mod:`bugless_dev.stack` chooses;
:func:`stack_environment` turns it into the ``BUGLESS_*`` variables a Helm
chart would set (databases, secrets, policy, drain and grace periods, each
service's certificate and its peers' CA). Kept apart from the process
handling in :mod:`bugless_dev.stack` so the map a deployment is compared
with reads in one place.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bugless_dev.pki import CertificateFiles, LocalPki
from bugless_dev.processes import clean_environment, run_bugless

#: Group -> global permissions of the tests' and the drill's Authenticator.
TEST_POLICY: Mapping[str, Sequence[str]] = {
    "admins": ["admin"],
    "importers": ["admin", "import_issues"],
    "component-creators": ["create_component"],
    "*": ["create_hotlist"],
}
#: Cheap password hashing: tests and benchmarks check behaviour, not hashing cost.
FAST_PASSWORD_HASHING: Mapping[str, str] = {
    "BUGLESS_AUTH_ARGON2_TIME_COST": "1",
    "BUGLESS_AUTH_ARGON2_MEMORY_KIB": "1024",
    "BUGLESS_AUTH_ARGON2_PARALLELISM": "1",
}
#: Every kind of service a stack runs (``bugless KIND serve``).
SERVICE_KINDS = ("model", "auth", "api", "web", "notify")
#: The kinds that move attachments' bytes, and so take ``--drain-transfer-seconds``.
TRANSFER_KINDS = ("model", "api", "web")


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """What a local stack runs with.

    Attributes:
        directory: Where logs (``logs/``), ready files (``run/``) and generated
            secrets go.
        pki: The CA and certificates (the API's server certificate, bots).
        model_database_url: The Model's database (superuser DSN).
        auth_database_url: The Authenticator's database (superuser DSN).
        policy: Group -> global permissions of the Authenticator.
        authenticators: The Authenticator's sign-in backends.
        fast_password_hashing: Cheap argon2 parameters (tests, benchmarks).
        drain_seconds: ``--drain-seconds`` of every service.
        grace_seconds: ``--grace-seconds`` of every service.
        transfer_seconds: ``--drain-transfer-seconds`` of the services that
            move attachments (:data:`TRANSFER_KINDS`: the bound on uploads and
            downloads once a service stops accepting); None: not set, so each
            service drains with its own default (120 s, as the chart's), and a
            transfer running in a drain of ``bugless dev``, a test or the
            drill outlasts the grace as it would in a deployment. A service
            of a stack still stopping after
            :data:`~bugless_dev.processes.STOP_TIMEOUT_SECONDS` is told to
            stop now (a second SIGTERM), so a hung transfer does not end the
            stop in a kill.
        token_key_file: The Authenticator's signing key; generated under
            ``directory`` (``bugless auth keygen``) when None.
        page_token_secret: The Model's page-token secret (random when empty).
        session_key: The web tier's cookie key (random when empty; one key for
            every web replica, so a session survives a change of replica).
        notify_secret_key: The notifier's key sealing webhook secrets at rest
            (random when empty; ``bugless dev`` keeps one in its state).
        base_env: The environment every process starts from (by default this
            process's, without ``BUGLESS_*``).
        extra_env: More ``BUGLESS_*`` settings for every service.
        insecure_local: Run every service with ``--insecure-local``
            (plaintext between services, no identities checked) instead of
            mutual TLS with a certificate per service (the default).
    """

    directory: Path
    pki: LocalPki
    model_database_url: str
    auth_database_url: str
    policy: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(TEST_POLICY))
    authenticators: Sequence[str] = ("local", "tls")
    fast_password_hashing: bool = True
    drain_seconds: float = 0.0
    grace_seconds: float = 5.0
    transfer_seconds: float | None = None
    token_key_file: Path | None = None
    page_token_secret: str = ""
    session_key: str = ""
    notify_secret_key: str = ""
    base_env: Mapping[str, str] = field(default_factory=clean_environment)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    insecure_local: bool = False


def stack_environment(
    config: StackConfig, identities: Mapping[str, CertificateFiles]
) -> dict[str, str]:
    """Every service's and command's environment: ``config`` as a chart would set it.

    Args:
        config: The stack's configuration.
        identities: Each service's certificate, by service (``model``, ``web``, ...).
    """
    token_key = config.token_key_file or generated_token_key(config.directory, config.base_env)
    env = {
        **config.base_env,
        "BUGLESS_DATABASE_URL": config.model_database_url,
        "BUGLESS_PAGE_TOKEN_SECRET": config.page_token_secret or secrets.token_urlsafe(24),
        "BUGLESS_AUTH_DATABASE_URL": config.auth_database_url,
        "BUGLESS_AUTH_AUTHENTICATORS": ",".join(config.authenticators),
        "BUGLESS_AUTH_TOKEN_KEY_FILES": str(token_key),
        "BUGLESS_AUTH_TLS_MAPPING_FILE": str(config.pki.mapping_file),
        "BUGLESS_AUTH_TLS_CA_FILE": str(config.pki.ca_file),
        # A bot added to the mapping works on its next call, without a restart.
        "BUGLESS_AUTH_TLS_RELOAD_CHECK_SECONDS": "0",
        "BUGLESS_AUTH_POLICY": json.dumps({g: list(p) for g, p in config.policy.items()}),
        "BUGLESS_WEB_SESSION_KEYS": config.session_key or secrets.token_urlsafe(32),
        # The notifier keeps its queue in a schema of its own (bugless_notify).
        "BUGLESS_NOTIFY_DATABASE_URL": config.model_database_url,
        "BUGLESS_NOTIFY_SECRET_KEYS": config.notify_secret_key or secrets.token_urlsafe(32),
        # Component webhooks here go to receivers on this machine; a real
        # notifier's default allows public addresses only (bugless_notify.addresses).
        "BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8 ::1",
    }
    for kind in SERVICE_KINDS:
        prefix = f"BUGLESS_{kind.upper()}_"
        env[prefix + "DRAIN_SECONDS"] = str(config.drain_seconds)
        env[prefix + "GRACE_SECONDS"] = str(config.grace_seconds)
        if kind in TRANSFER_KINDS and config.transfer_seconds is not None:
            env[prefix + "DRAIN_TRANSFER_SECONDS"] = str(config.transfer_seconds)
        if config.insecure_local:
            env[prefix + "INSECURE_LOCAL"] = "true"
    if not config.insecure_local:
        env.update(mutual_tls_environment(config.pki.ca_file, identities))
    if config.fast_password_hashing:
        env.update(FAST_PASSWORD_HASHING)
    env.update(config.extra_env)
    return env


def mutual_tls_environment(
    ca_file: Path, identities: Mapping[str, CertificateFiles]
) -> dict[str, str]:
    """Each service's certificate and the CA of its peers, as a chart sets them."""
    ca = str(ca_file)
    env: dict[str, str] = {}
    for kind in ("model", "auth"):
        files = identities[kind]
        prefix = f"BUGLESS_{kind.upper()}_"
        env |= {
            prefix + "TLS_CERT": str(files.cert),
            prefix + "TLS_KEY": str(files.key),
            prefix + "CLIENT_CA": ca,
        }
    web, api, notify = identities["web"], identities["api"], identities["notify"]
    env |= {
        "BUGLESS_NOTIFY_TLS_CERT": str(notify.cert),
        "BUGLESS_NOTIFY_TLS_KEY": str(notify.key),
        "BUGLESS_NOTIFY_CLIENT_CA": ca,
        "BUGLESS_NOTIFY_SERVICE_CA": ca,
        "BUGLESS_NOTIFY_SERVICE_CERT": str(notify.cert),
        "BUGLESS_NOTIFY_SERVICE_KEY": str(notify.key),
        "BUGLESS_WEB_TLS_CA": ca,
        "BUGLESS_WEB_TLS_CERT": str(web.cert),
        "BUGLESS_WEB_TLS_KEY": str(web.key),
        "BUGLESS_API_SERVICE_CA": ca,
        "BUGLESS_API_SERVICE_CERT": str(api.cert),
        "BUGLESS_API_SERVICE_KEY": str(api.key),
    }
    return env


def generated_token_key(directory: Path, base_env: Mapping[str, str]) -> Path:
    """The Authenticator's signing key under ``directory`` (``bugless auth keygen`` once)."""
    path = directory / "secrets" / "auth-token-key.pem"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        key = run_bugless(["auth", "keygen"], base_env).stdout
        path.touch(mode=0o600)
        path.write_text(key)
    return path
