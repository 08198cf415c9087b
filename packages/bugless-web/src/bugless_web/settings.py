"""The settings of one WebFrontend replica, filled from flags and ``BUGLESS_WEB_*`` env.

Every replica of a deployment gets the same settings (the same session keys
above all): the web tier is stateless, so any replica serves any request.
Each field declares its flag, variable, default and help once
(:func:`bugless_core.settings.setting`); ``bugless web serve`` generates its
options from :class:`WebSettings` and receives the typed object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bugless_core.logs import LogSettings
from bugless_core.networks import IPNetwork, parse_networks
from bugless_core.service_address import ServiceAddress, client_tls_problem
from bugless_core.setting_files import pem_certificates, pem_private_key
from bugless_core.settings import group, setting
from bugless_core.user_changes import USER_CHANGES_SECONDS_HELP
from bugless_web._setting_values import (
    checked_api_address,
    checked_public_url,
    imported_source_urls,
    session_keys_of,
    trusted_proxy_networks,
)

#: Page sizes a result table's menu offers (the deployment's default is added
#: to them if it is none of these).
PAGE_SIZES = (25, 50, 100, 200)
#: The largest page the web asks of the Model.
MAX_PAGE_SIZE = 200


#: The peers believed in ``--dev`` when ``--trusted-proxy`` is not given: a
#: proxy (or a test) on the same machine.
DEV_TRUSTED_PROXIES = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    """How a WebFrontend replica is configured.

    Attributes:
        model: Where the Model service listens.
        auth: Where the Authenticator service listens.
        notify: Where the notifier's status service listens (dead letters
            for admins); reached with the same TLS files as the backends.
        session_keys: Secrets for the session cookie, newest first. The first
            encrypts new cookies; every one still decrypts (key rotation: add
            the new key in front, drop the old one after the session lifetime).
        host: Address uvicorn binds.
        port: HTTP port; 0 lets the kernel pick a free one (see ``ready_file``).
        trusted_proxies: The peers (addresses or CIDRs, IPv4 and IPv6) whose
            ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed: the
            ingress controller's pods. A request from any other peer is
            taken as it came: its peer address is the client address (the
            one the sign-in throttle and the device-login caps count and a
            new session records), whatever headers it sends. From a trusted
            peer the client is the rightmost address of ``X-Forwarded-For``
            that is not itself a trusted proxy (a client can prepend
            anything; each proxy appends the peer it saw). None: nobody
            outside ``dev``, loopback in ``dev`` (:data:`DEV_TRUSTED_PROXIES`).
        public_url: External base URL (``https://bugs.example.com``, or with a
            path prefix a proxy strips, ``https://example.com/bugs``); the OIDC
            redirect URI is ``<public_url>/signin/oidc/callback`` and must be
            registered at the provider exactly so. Empty: derived from each
            request's Host (fine on one host name; behind a proxy that
            rewrites Host or terminates TLS, set it). A trailing slash is
            dropped; a query, fragment or credentials are refused, and so is
            ``http://`` outside ``dev`` (the cookie is ``Secure``: a browser
            on plain HTTP would never send it back to the callback).
        api_public_address: The gRPC API's ``host:port`` as people's machines
            reach it (its LoadBalancer's name, not the in-cluster Service),
            shown in the ``bugless login --web … --api … --ca …`` command of
            the API access page so that it can be copied whole. Empty: the
            page shows ``API-HOST:PORT`` and says to ask the administrator.
        api_ca_hint: The file people pass as ``--ca`` (the CA bundle of the
            API's server certificate) as the deployment's own instructions
            name it, shown in the same command. Empty: ``API-CA.pem``.
        asset_archive_dir: An asset archive (:mod:`bugless_web.builds`) whose
            files are served after this version's own.
        steer_to: While draining, new page loads are redirected (303) here,
            followed by the requested path (another instance or version).
        dev: Development mode: the session cookie drops the ``Secure`` flag so
            plain-HTTP localhost works, and templates reload from disk.
        dev_mailbox: The directory ``bugless dev``'s SMTP sink writes the
            notifier's mails to; shown at ``/dev/mail`` so a newcomer sees
            notifications work. Refused without ``dev``: a production
            replica never serves a page of everyone's mail.
        drain_seconds: After SIGTERM, how long readiness fails (and page loads
            are steered) before the server stops accepting connections.
        grace_seconds: Then how long in-flight requests may take to finish;
            one still running is cut (:mod:`bugless_web.drain`).
        drain_transfer_seconds: The same for a transfer in progress (an
            attachment's upload or download, a CSV export): longer, so a
            rollout does not cost a person their upload. The process exits
            as soon as the last request ends, not at the bound. A value
            below ``grace_seconds`` counts as it (a transfer is never cut
            before an ordinary request); a pod's termination grace period
            must cover ``drain_seconds`` plus this (the chart computes it).
        token_cache_seconds: How long a validated session token is trusted
            without asking the Authenticator again: the bound on how late
            this replica notices a sign-out on another replica, "sign out
            everywhere", a revocation or a disabled user. 0 asks on every
            request.
        component_cache_seconds: How long each caller's view of the component
            tree (paths for list pages, the pickers of the issue forms) is
            reused before asking the Model again. Bounds how late another
            replica's component rename, template or ACL change shows; 0 asks
            on every page.
        hotlist_cache_seconds: How long each viewer's own hotlists (the
            menus of search and issue pages) are reused. The viewer's own
            hotlist changes through this replica show at once; a hotlist
            shared with them elsewhere shows that late. 0 asks every page.
        timeline_cache_seconds: How long an issue's rendered history is reused
            for the same issue version and reader
            (:mod:`bugless_web.rendered_timelines`). Any change to the issue
            is a new version and shows at once; a renamed person or component
            in the history shows this late. The issue's attachment list is
            kept as long, per version (:mod:`bugless_web.kept_attachments`).
            0 renders every page.
        user_cache_seconds: How long each person shown on a page (username,
            display name) is reused before asking the Authenticator again
            while the users' change feed cannot be followed: then it bounds
            how late a rename shows and how long an old username still names
            the same person in forms; 0 asks on every page.
        user_changes_seconds: How often the users' change feed
            (``GetUserChanges``) is read. While it is, people are kept until
            they change (at most 10 minutes) and a rename shows within this
            plus up to two of the Authenticator's polls (its
            ``user_changes_seconds``: a replica answers from what its own
            follower last read, ``bugless_auth.user_feed``). 0, or a value
            not below ``user_cache_seconds`` (too rare to vouch for a person
            kept longer than that), never reads it: ``user_cache_seconds``
            then bounds all.
        metrics_host: Address of the Prometheus ``/metrics`` endpoint, kept
            apart from ``host`` so that pages and metrics can be exposed
            differently (pages to the ingress, metrics to the scraper alone).
        metrics_port: Port of that endpoint (:mod:`bugless_web.metrics`):
            requests by route, method and status, calls to each backend by
            method and code. ``None`` serves none, 0 picks a free one (in the
            ready file). With ``workers`` a process the parent forks for it
            serves one sum over them (:func:`bugless_web.workers.serve_workers`).
        reuse_port: Bind with ``SO_REUSEPORT`` so several web processes share
            the port; the kernel spreads connections over them. One Python
            process uses one core: this is how one machine serves pages on all
            of its cores (in Kubernetes, run more replicas instead).
        workers: Processes that serve the one listening socket, forked after
            it is bound (:func:`bugless_web.workers.serve_workers`): a single
            ``bugless web serve`` then uses that many cores. Each is a whole
            replica with its own short caches.
        tls_ca: CA of the Model's and Authenticator's certificates; setting it
            turns TLS on towards them (``model`` and ``auth`` get these files).
        tls_cert: This frontend's client certificate towards them (mutual TLS).
        tls_key: Private key of ``tls_cert``.
        insecure_local: Allow plaintext gRPC to the Model and the
            Authenticator (debugging on one machine only; logs a warning at
            every start). Without it mutual TLS to both is required: the web's
            certificate (``spiffe://bugless/web``) is what lets it call them.
        ready_file: Once serving, write the bound port and pid here as JSON
            (:func:`bugless_core.ready_file.write_ready_file`); with port 0 this
            is how a supervisor learns the port the kernel chose.
        call_timeout_seconds: Deadline of each gRPC call to a backend; a page
            never hangs on a backend that stopped answering. Not of an
            upload, which lasts as long as the browser takes to send the file
            (the two settings below), nor of a download after its first
            message (the two after them), nor of a live page's watch after
            its first message (it may rightly wait hours for a change).
        upload_idle_seconds: An upload (the page's script or the no-script
            form) fails once no bytes have moved for this long: the browser
            sent nothing (408, naming the wait), or the Model took nothing
            (503). However slow, an upload that keeps moving is not cut off
            by this. After the last byte, the Model's answer has
            ``call_timeout_seconds``.
        upload_timeout_seconds: The most one upload may take in all, moving
            or not (408 past it): a browser trickling a byte at a time
            cannot hold a request forever. The default lets the largest file
            the Model accepts by default (256 MiB) through at ~75 KB/s.
        download_idle_seconds: A download fails once no bytes have moved for
            this long: the browser read nothing (the Model call is released
            then), or the Model sent nothing. However slow, a download that
            keeps moving is not cut off by this.
        download_timeout_seconds: The most one download may take in all,
            moving or not.
        imported_sources: The old trackers this deployment imported from
            (``https://trac.example.org/``, ``https://github.com/acme/``),
            normalised to end in ``/``. The ``/imported`` page of an issue
            not imported (yet) links the ``source=`` URL the import wrote
            only when it lies under one of them: any other URL a crafted
            link carries would be a link to anywhere shown on this site's
            own page (phishing). Empty: no such link is shown.
        session_max_age_seconds: Lifetime of the session cookie.
        page_size: Issues per list page.
        log: Log level and format.
    """

    model: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="Model service host:port."
    )
    auth: ServiceAddress = setting(
        parse=ServiceAddress.parse, metavar="HOST:PORT", help="Authenticator service host:port."
    )
    notify: ServiceAddress | None = setting(
        None,
        parse=ServiceAddress.parse,
        metavar="HOST:PORT",
        help="The notifier's gRPC address (`bugless notify serve`), for the admin page of "
        "failed deliveries (/admin/notifications); unset, that page says none is configured.",
    )
    session_keys: tuple[str, ...] = setting(
        flag="--session-key",
        env="BUGLESS_WEB_SESSION_KEYS",
        multiple=True,
        parse=session_keys_of,
        secret=True,
        help="Cookie secret (16+ chars); repeat for rotation, newest first (env: space-separated).",
    )
    host: str = setting("127.0.0.1", help="Address to bind; 0.0.0.0 in a pod.")
    port: int = setting(8080, help="HTTP port; 0 picks a free one (see --ready-file).")
    trusted_proxies: tuple[str, ...] | None = setting(
        None,
        flag="--trusted-proxy",
        env="BUGLESS_WEB_TRUSTED_PROXIES",
        multiple=True,
        parse=trusted_proxy_networks,
        metavar="CIDR",
        help="A proxy (address or CIDR, e.g. the ingress controller's pod CIDR) whose "
        "X-Forwarded-For/-Proto are believed; repeat for several (env: separated by commas or "
        "spaces). Any other peer's address is the client's, whatever it sends. Default: "
        "none; loopback with --dev.",
    )
    metrics_host: str = setting("127.0.0.1", help="Prometheus /metrics address.")
    metrics_port: int | None = setting(
        None,
        help="Prometheus /metrics port (requests by route and status, calls to the backends); "
        "unset serves none, 0 picks a free one (see --ready-file). With --workers a process of "
        "its own, forked by the parent, serves the sum over the workers (connection windows: "
        "their minimum).",
    )
    public_url: str = setting(
        "", help="External base URL, e.g. https://bugs.example.com (OIDC redirect URI)."
    )
    api_public_address: str = setting(
        "",
        metavar="HOST:PORT",
        help="The gRPC API's address as people's machines reach it (e.g. "
        "api.bugs.example.com:443), shown in the `bugless login` command of the API access "
        "page; empty: a placeholder there.",
    )
    api_ca_hint: str = setting(
        "",
        metavar="FILE",
        help="The CA file of the API's certificate as your instructions name it, shown as "
        "`--ca` in that command (e.g. ~/bugless-api-ca.pem); empty: a placeholder.",
    )
    steer_to: str = setting(
        "", help="While draining, redirect page loads here (another instance or version)."
    )
    download_url: str = setting(
        "",
        help="Base URL of a separate host name serving attachment downloads (a cookieless "
        "origin; the same replicas behind it), e.g. https://files.bugs.example.com; empty: "
        "downloads come from this origin.",
    )
    asset_archive_dir: Path | None = setting(
        None,
        directory=True,
        help="Static files of earlier releases (`bugless web assets export`), served too, so "
        "pages of the previous version keep working during a rollout.",
    )
    dev: bool = setting(
        False,
        flag="--dev",
        help="Plain-HTTP development mode: cookie without Secure, templates reload.",
    )
    dev_mailbox: Path | None = setting(
        None,
        directory=True,
        help="Development only (needs --dev): a directory of .eml files (the SMTP sink of "
        "`bugless dev`) shown to admins at /dev/mail; unset, that page is 404.",
    )
    drain_seconds: float = setting(
        5.0, help="After SIGTERM, fail readiness this long before closing."
    )
    grace_seconds: float = setting(20.0, help="Then wait this long for in-flight requests.")
    drain_transfer_seconds: float = setting(
        120.0,
        help="Then wait up to this long for uploads and downloads in progress (one below "
        "--grace-seconds counts as it); the server exits once the last ends, and cuts any "
        "still running.",
    )
    token_cache_seconds: float = setting(
        5.0,
        help="How long a validated session token is reused; bounds how late this replica "
        "notices a sign-out elsewhere, a revocation or a disabled user.",
    )
    component_cache_seconds: float = setting(
        10.0, help="How long each caller's component tree (paths, pickers) is reused."
    )
    hotlist_cache_seconds: float = setting(
        5.0,
        help="How long each viewer's own hotlists (the menus of search and issue pages) are "
        "reused; their own hotlist changes show at once; 0 = ask every page.",
    )
    timeline_cache_seconds: float = setting(
        5.0,
        help="How long an issue's rendered timeline is reused for the same version and reader "
        "(names in it show that late), and its attachment list for the same version; "
        "0 = render and ask every page.",
    )
    user_cache_seconds: float = setting(
        5.0,
        deprecated_flags=("--user-cache-ttl",),
        deprecated_env=("BUGLESS_WEB_USER_CACHE_TTL",),
        help="Seconds each person shown (username, display name) is reused when the users' "
        "change feed cannot be followed; 0 = ask every page.",
    )
    user_changes_seconds: float = setting(1.0, help=USER_CHANGES_SECONDS_HELP)
    reuse_port: bool = setting(
        False,
        help="Bind with SO_REUSEPORT, so that several web processes share the port "
        "(one per core on a single machine).",
    )
    workers: int = setting(
        1,
        help="Processes serving the one listening socket (one per core on a single machine; "
        "in Kubernetes, run more replicas instead).",
    )
    tls_ca: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="CA of the Model/Authenticator certificates; enables TLS to them.",
    )
    tls_cert: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="This frontend's client certificate (mTLS to the services).",
    )
    tls_key: Path | None = setting(
        None,
        must_exist=True,
        content=pem_private_key,
        key_of="tls_cert",
        help="Private key of --tls-cert.",
    )
    insecure_local: bool = setting(
        False,
        help="Allow plaintext gRPC to the Model and Authenticator (debugging on one machine "
        "only; logs a warning at every start). Without it mutual TLS is required.",
    )
    ready_file: Path | None = setting(
        None,
        help="Once serving, write the bound port and pid here as JSON (for supervisors and "
        "tests that start the web tier with --port 0).",
    )
    call_timeout_seconds: float = setting(
        10.0,
        help="Deadline of each gRPC call to a backend (not of an upload or a download: see "
        "--upload-idle-seconds, --download-idle-seconds and the total limits).",
    )
    upload_idle_seconds: float = setting(
        60.0,
        help="An upload fails once no bytes have moved (from the browser, or to the Model) "
        "for this long; one that keeps moving is never cut off by it.",
    )
    upload_timeout_seconds: float = setting(
        3600.0,
        help="The most one upload may take in all, moving or not (the default passes the "
        "default 256 MiB file limit at ~75 KB/s).",
    )
    download_idle_seconds: float = setting(
        60.0,
        help="A download fails once no bytes have moved (read by the browser, or from the "
        "Model) for this long; one that keeps moving is never cut off by it.",
    )
    download_timeout_seconds: float = setting(
        3600.0, help="The most one download may take in all, moving or not."
    )
    imported_sources: tuple[str, ...] = setting(
        (),
        flag="--imported-source",
        env="BUGLESS_WEB_IMPORTED_SOURCES",
        multiple=True,
        parse=imported_source_urls,
        metavar="URL",
        help="An old tracker this deployment imported from, e.g. https://trac.example.org/ "
        "(repeatable; env: space-separated): the /imported page of an issue not imported "
        "links the import's source= URL only under one of these; none: no such link.",
    )
    session_max_age_seconds: int = setting(
        14 * 24 * 3600, cli=False, help="Lifetime of the session cookie."
    )
    page_size: int = setting(
        50,
        help="Issues a result table shows per page until the reader picks another size in its "
        f"menu ({', '.join(str(n) for n in PAGE_SIZES)}); 1 to {MAX_PAGE_SIZE}.",
    )
    export_row_cap: int = setting(
        10_000, help="Most issues one CSV export writes (all pages, up to this many)."
    )
    log: LogSettings = group(LogSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            msg = f"--port {self.port}: give 0 (any free port) to 65535"
            raise ValueError(msg)
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            msg = f"--page-size {self.page_size}: give 1 to {MAX_PAGE_SIZE} issues per page"
            raise ValueError(msg)
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            msg = f"--metrics-port {self.metrics_port}: give 0 (any free port) to 65535"
            raise ValueError(msg)
        if self.component_cache_seconds < 0:
            msg = f"--component-cache-seconds {self.component_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        for flag, seconds in (
            ("--drain-seconds", self.drain_seconds),
            ("--grace-seconds", self.grace_seconds),
            ("--drain-transfer-seconds", self.drain_transfer_seconds),
        ):
            if seconds < 0:
                msg = f"{flag} {seconds:g}: give 0 or more"
                raise ValueError(msg)
        if self.workers < 1:
            msg = f"--workers {self.workers}: give 1 or more"
            raise ValueError(msg)
        if self.hotlist_cache_seconds < 0:
            msg = f"--hotlist-cache-seconds {self.hotlist_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if self.timeline_cache_seconds < 0:
            msg = f"--timeline-cache-seconds {self.timeline_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if self.token_cache_seconds < 0:
            msg = f"--token-cache-seconds {self.token_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if self.user_cache_seconds < 0:
            msg = f"--user-cache-seconds {self.user_cache_seconds:g}: give 0 or more"
            raise ValueError(msg)
        if not 0 <= self.user_changes_seconds <= 60:
            msg = f"--user-changes-seconds {self.user_changes_seconds:g}: give 0 (never) to 60"
            raise ValueError(msg)
        for flag, seconds in (
            ("--call-timeout-seconds", self.call_timeout_seconds),
            ("--upload-idle-seconds", self.upload_idle_seconds),
            ("--upload-timeout-seconds", self.upload_timeout_seconds),
            ("--download-idle-seconds", self.download_idle_seconds),
            ("--download-timeout-seconds", self.download_timeout_seconds),
        ):
            if not seconds > 0:
                msg = f"{flag} {seconds:g}: give a number of seconds above 0"
                raise ValueError(msg)
        if self.export_row_cap < 1:
            msg = f"--export-row-cap {self.export_row_cap}: give 1 or more"
            raise ValueError(msg)
        if not self.session_keys:
            msg = "at least one session key is needed (--session-key)"
            raise ValueError(msg)
        for key in self.session_keys:
            if len(key) < 16:
                msg = "each session key needs at least 16 characters"
                raise ValueError(msg)
        if self.trusted_proxies is not None:
            try:
                proxies = trusted_proxy_networks(self.trusted_proxies)
            except ValueError as exc:
                msg = f"--trusted-proxy: {exc}"
                raise ValueError(msg) from None
            object.__setattr__(self, "trusted_proxies", proxies)
        if self.dev_mailbox is not None and not self.dev:
            msg = "--dev-mailbox is for development only: it needs --dev"
            raise ValueError(msg)
        object.__setattr__(self, "public_url", checked_public_url(self.public_url, dev=self.dev))
        object.__setattr__(self, "imported_sources", imported_source_urls(self.imported_sources))
        object.__setattr__(self, "api_public_address", checked_api_address(self.api_public_address))
        if any(not c.isprintable() for c in self.api_ca_hint):
            msg = f"--api-ca-hint {self.api_ca_hint!r}: give a file name on one line"
            raise ValueError(msg)
        object.__setattr__(self, "api_ca_hint", self.api_ca_hint.strip())
        object.__setattr__(
            self,
            "download_url",
            checked_public_url(self.download_url, dev=self.dev, flag="--download-url"),
        )
        if self.steer_to and not self.steer_to.startswith(("http://", "https://", "/")):
            msg = f"--steer-to {self.steer_to!r}: give an http(s) URL"
            raise ValueError(msg)
        problem = client_tls_problem(self.tls_ca, self.tls_cert, self.tls_key)
        if problem is not None:
            raise ValueError(problem)
        if self.tls_ca is not None:
            for name in ("model", "auth", "notify"):
                if getattr(self, name) is None:
                    continue
                address = dataclasses.replace(
                    getattr(self, name), ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key
                )
                object.__setattr__(self, name, address)
        if not self.insecure_local:
            for name in ("model", "auth", "notify"):
                address = getattr(self, name)
                if address is None:
                    continue
                if address.ca is None or address.cert is None:
                    msg = (
                        f"mutual TLS to the {name} service is required: give --tls-ca, "
                        "--tls-cert and --tls-key (a certificate naming spiffe://bugless/web), "
                        "or --insecure-local for plaintext debugging on one machine"
                    )
                    raise ValueError(msg)

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        """The networks of the peers whose forwarding headers are believed (none: nobody).

        ``trusted_proxies`` when given; else loopback in ``dev`` and nothing
        outside it, so that a replica that clients reach directly never
        lets them choose their own address.
        """
        if self.trusted_proxies is not None:
            return parse_networks(self.trusted_proxies)
        return parse_networks(DEV_TRUSTED_PROXIES) if self.dev else ()
