"""What a bugless gRPC server listens on, how it authenticates, and how it stops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bugless_core.setting_files import pem_certificates, pem_private_key
from bugless_core.settings import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrpcServerSettings:
    """Listening, TLS, metrics and shutdown settings shared by every gRPC service.

    Each service's own settings hold one of these; the CLI fills it from flags
    and ``BUGLESS_*`` variables. Invalid combinations are refused when the
    object is built, so a misconfigured pod fails at start-up, not at the first
    TLS handshake.

    Attributes:
        host: Address to bind. Loopback by default so that a forgotten flag
            never exposes an unauthenticated service; a pod sets ``0.0.0.0``.
        port: TCP port to bind; 0 lets the kernel pick a free one (tests, and
            ``bugless dev``), readable afterwards from the runner's ``port``.
        tls_cert: PEM certificate chain presented to clients. Together with
            ``tls_key`` it turns TLS on; without both the server speaks
            plaintext HTTP/2 (fine behind a mesh sidecar, or on loopback).
        tls_key: PEM private key of ``tls_cert``.
        client_ca: PEM bundle of the CAs whose client certificates are
            accepted. Setting it turns on mutual TLS: a client that presents no
            certificate, or one this bundle does not vouch for, is refused
            during the handshake, before any gRPC call is seen. Requires
            ``tls_cert``/``tls_key``.
        metrics_host: Address of the Prometheus ``/metrics`` endpoint. Kept
            apart from ``host`` so that metrics and gRPC can be exposed
            differently; loopback by default, so a pod scraped by Prometheus
            sets ``0.0.0.0``.
        metrics_port: Port of the metrics endpoint; ``None`` serves no metrics
            (tests, embedded use), 0 picks a free port.
        drain_seconds: How long the server keeps serving while reporting
            NOT_SERVING before it stops accepting calls, so that load balancers
            and Kubernetes notice and steer new traffic elsewhere first. It
            should exceed the health-check period of whatever balances traffic.
        grace_seconds: How long, after it stops accepting, the server waits for
            calls already in progress; calls still running then are cancelled
            (transfers too, unless the service's settings are
            :class:`TransferServerSettings`). Keep ``drain_seconds`` plus this
            (or ``drain_transfer_seconds``) below the pod's
            ``terminationGracePeriodSeconds`` (30 by default; the chart
            computes it) so that the process exits on its own instead of
            being killed.
        reuse_port: Bind with ``SO_REUSEPORT`` so that several processes of
            the same service can listen on one port; the kernel spreads new
            connections over them. One Python process uses one core, so this
            is how a single machine runs a service on all its cores (in
            Kubernetes, run more replicas instead).
        ready_file: Once serving, write ``{"port", "metrics_port", "pid"}``
            here as JSON (atomically). With port 0 this is how a supervisor
            (``bugless dev``, the tests, the benchmarks) learns the port the
            kernel chose, with no window for another process to take it.
        insecure_local: Allow plaintext (or TLS without client
            certificates): for debugging on one machine only. Without it a
            server refuses to start unless it has ``tls_cert``, ``tls_key``
            and ``client_ca``, because the per-method access tables
            (:mod:`bugless_core.grpc._access`) need the caller's certificate.
            A plaintext server checks no identity and logs a warning at every
            start. For a frontend it also allows plaintext towards the Model
            and the Authenticator.
        admin_identities: Service identities (``spiffe://bugless/<name>``)
            allowed to make the calls an ACCESS table marks ``@admin``.
        import_identities: Service identities allowed to make the calls an
            ACCESS table marks ``@import``.
    """

    host: str = setting("127.0.0.1", help="Address to bind; 0.0.0.0 in a pod.")
    port: int = setting(0, help="gRPC port; 0 picks a free one (see --ready-file).")
    tls_cert: Path | None = setting(
        None, must_exist=True, content=pem_certificates, help="PEM certificate chain; enables TLS."
    )
    tls_key: Path | None = setting(
        None,
        must_exist=True,
        content=pem_private_key,
        key_of="tls_cert",
        help="PEM private key of --tls-cert.",
    )
    client_ca: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="CA bundle for client certificates; enables mutual TLS.",
    )
    metrics_host: str = setting("127.0.0.1", help="Prometheus /metrics address.")
    metrics_port: int | None = setting(
        None, help="Prometheus /metrics port; unset serves none, 0 picks a free one."
    )
    drain_seconds: float = setting(
        5.0, help="After SIGTERM, report NOT_SERVING this long before closing."
    )
    grace_seconds: float = setting(20.0, help="Then wait this long for in-flight calls.")
    reuse_port: bool = setting(
        False,
        help="Bind with SO_REUSEPORT, so that several processes of this service share the "
        "port (one per core on a single machine).",
    )
    ready_file: Path | None = setting(
        None,
        help="Once serving, write the bound ports and pid here as JSON (for supervisors "
        "and tests that start the service with --port 0).",
    )

    insecure_local: bool = setting(
        False,
        help="Allow plaintext gRPC without service identities (debugging on one machine "
        "only; logs a warning at every start). Without it mutual TLS is required.",
    )
    admin_identities: tuple[str, ...] = setting(
        ("admin",),
        help="Service identities (spiffe://bugless/NAME) allowed to make administrative "
        "calls, comma-separated.",
    )
    import_identities: tuple[str, ...] = setting(
        ("import",),
        help="Service identities allowed to make import calls, comma-separated.",
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "tls_cert and tls_key go together: set both to serve TLS, or neither for plaintext"
            )
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError(
                "client_ca (mutual TLS) needs tls_cert and tls_key: a server cannot ask for "
                "client certificates over plaintext"
            )
        if not self.insecure_local and self.client_ca is None:
            raise ValueError(
                "mutual TLS is required between bugless services: give --tls-cert, --tls-key "
                "and --client-ca (the service's certificate naming spiffe://bugless/<service>, "
                "and the CA of its callers), or --insecure-local for plaintext debugging on "
                "one machine"
            )
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535, not {value}")
        for name in ("drain_seconds", "grace_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")

    @property
    def transfer_bound_seconds(self) -> float:
        """How long after it stops accepting a drain waits for transfers: here the grace."""
        return self.grace_seconds

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (a certificate and key are configured)."""
        return self.tls_cert is not None

    @property
    def access_roles(self) -> dict[str, tuple[str, ...]]:
        """The ACCESS tables' roles as these settings resolve them."""
        return {"@admin": self.admin_identities, "@import": self.import_identities}

    @property
    def mutual_tls(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca``."""
        return self.client_ca is not None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransferServerSettings(GrpcServerSettings):
    """The settings of a gRPC service that moves attachments' bytes (the Model, the API).

    Only these services take ``--drain-transfer-seconds``: on the others
    (Authenticator, notifier) a drain has no transfer to wait for, and a flag
    that changes nothing would mislead whoever sets it.

    Attributes:
        drain_transfer_seconds: How long a transfer (an attachment's upload or
            download: ``UploadAttachment``, ``DownloadAttachment``) still
            running at the end of ``grace_seconds`` may go on, counted from
            when the server stopped accepting: a large file on a slow link
            takes minutes, and a rollout should not cost a person their
            upload. Other calls still running at the grace are cancelled
            then; the server closes as soon as the last transfer ends. A
            value below ``grace_seconds`` counts as it (a transfer is never
            cut before other calls).
    """

    drain_transfer_seconds: float = setting(
        120.0,
        help="Then wait up to this long for attachment uploads and downloads still in "
        "progress (one below --grace-seconds counts as it).",
    )

    @property
    def transfer_bound_seconds(self) -> float:
        """How long after it stops accepting a drain waits for transfers."""
        return max(self.grace_seconds, self.drain_transfer_seconds)
