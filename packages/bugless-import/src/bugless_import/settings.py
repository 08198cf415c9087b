"""The settings of ``bugless import``, declared once (flags and ``BUGLESS_IMPORT_*``)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bugless_core.limits import MAX_IMPORT_BATCH
from bugless_core.service_address import ServiceAddress, client_tls_problem
from bugless_core.setting_files import pem_certificates, pem_private_key
from bugless_core.settings import setting
from bugless_import.mapping import mapping_content


def _options(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            msg = f"--option {value!r}: write key=value"
            raise ValueError(msg)
        pairs.append((key.strip(), rest.strip()))
    return tuple(pairs)


@dataclass(frozen=True, kw_only=True)
class ImportSettings:
    """How one ``bugless import`` run reaches bugless and what it does.

    Attributes:
        model: The Model service; the import calls it directly, as a
            frontend does, with the import identity as the caller.
        auth: The Authenticator (people matching, the import identity).
        tls_ca: CA of the services' certificates; turns TLS on.
        tls_cert: The import identity's client certificate (mTLS).
        tls_key: Its private key.
        token: A session token of the person running the import: it must
            hold the ``admin`` and ``import_issues`` permissions.
        user: Instead of ``token``: sign this person in with their password
            (the command asks for it) and use that session's token.
        password: The password of ``user``; set by the command from a prompt
            or standard input, never a flag (every user of a machine sees
            a process's arguments).
        mapping: A TOML mapping file (statuses, priorities, types,
            severities, components, labels); see the package README.
        state_dir: Where progress is kept between runs (resume) and the
            final report and the redirect CSV are written.
        dry_run: Read the source and report what would happen; write nothing.
        refresh: Import the issues an earlier run finished again, so that
            history the source gained since is appended (the Model writes
            nothing for an issue with no newer history).
        retry_refused: Read again the source files the Model refused in an
            earlier run (over its size limit, a type it does not accept),
            which runs otherwise skip (``<source>-refused.jsonl``): after
            the deployment's limit or accepted types changed.
        concurrency: Import calls in flight at once, and changes of the
            relation pass (each on other issues).
        file_concurrency: Source files read and sent to the Model at once,
            across the run (each costs a few 512 KiB chunks of memory):
            a copy waits on the source's latency per file, so a few in
            flight go several times faster than one; more loads the source.
        batch_size: Issues per ImportIssues call; 0 makes one ImportIssue
            call per issue (a Model older than ImportIssues; it reads each
            issue back, which costs about a third of the Model's time).
        new_url: Base URL of the bugless web UI, for the CSV of old URL ->
            new URL (``https://bugless.example.org``). Without it no CSV is
            written (the report warns): a redirect from the old tracker's
            host needs absolute new URLs.
        component_root: Components the mapping does not name are created
            under this top-level component, by the source's names.
        restricted_component: The component (path) to import the issues
            the source shows only to some of its readers into (Redmine
            private issues, Jira issues with a security level); without it
            they are left out. It must exist and be readable by fewer than
            ``component_root`` and the components their own map to
            (:mod:`bugless_import.restricted`), or the run refuses to start.
        options: Importer options, ``key=value`` (see each importer).
        quiet: No progress bar.
        call_timeout_seconds: Deadline of each call to a service.
    """

    model: ServiceAddress | None = setting(
        None, parse=ServiceAddress.parse, metavar="HOST:PORT", help="Model service host:port."
    )
    auth: ServiceAddress | None = setting(
        None,
        parse=ServiceAddress.parse,
        metavar="HOST:PORT",
        help="Authenticator service host:port.",
    )
    tls_ca: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="CA of the services' certificates; enables TLS to them.",
    )
    tls_cert: Path | None = setting(
        None,
        must_exist=True,
        content=pem_certificates,
        help="The import identity's client certificate (mTLS).",
    )
    tls_key: Path | None = setting(
        None,
        must_exist=True,
        content=pem_private_key,
        key_of="tls_cert",
        help="Private key of --tls-cert.",
    )
    token: str = setting(
        "",
        secret=True,
        help="Session token of the person running the import (needs admin and import_issues); "
        "or give --user.",
    )
    user: str = setting(
        "",
        metavar="USERNAME",
        help="Sign in as this user (needs admin and import_issues) instead of giving --token: "
        "the password is asked for on a terminal, else read from the first line of standard "
        "input.",
    )
    password: str = setting("", cli=False, secret=True, help="The password of --user.")
    mapping: Path | None = setting(
        None,
        must_exist=True,
        content=mapping_content,
        help="TOML mapping file: statuses, priorities, components, labels.",
    )
    state_dir: Path = setting(
        Path("bugless-import-state"),
        help="Progress (for resuming), the final report and the old->new URL CSV go here.",
    )
    dry_run: bool = setting(False, help="Report what would be imported; write nothing.")
    refresh: bool = setting(
        False,
        help="Import again the issues an earlier run finished (appends their newer history); "
        "by default a run skips them, which is how an interrupted run resumes quickly.",
    )
    retry_refused: bool = setting(
        False,
        help="Read again the files the Model refused in an earlier run (too large, a type it "
        "does not accept), which are skipped otherwise: after its limits changed.",
    )
    concurrency: int = setting(
        8, help="Import calls in flight at once (and relation changes, each on other issues)."
    )
    file_concurrency: int = setting(
        4,
        help="Attachments read from the source and sent to the Model at once (each holds "
        "a few 512 KiB chunks in memory).",
    )
    batch_size: int = setting(
        50,
        help="Issues per ImportIssues call (at most 200); 0: one ImportIssue call per issue, "
        "for a Model older than ImportIssues.",
    )
    new_url: str = setting(
        "",
        help="Base URL of the bugless web UI, e.g. https://bugs.example.org, for the old URL "
        "-> new URL CSV (<source>-redirects.csv); without it no CSV is written.",
    )
    component_root: str = setting(
        "Imported", help="Top-level component for source components the mapping does not name."
    )
    restricted_component: str = setting(
        "",
        metavar="PATH",
        help="Import the issues the source restricts (Redmine private issues, Jira issues with "
        "a security level) into this existing component, whose ACL must let fewer people read "
        "it than --component-root; without it they are left out and listed in the report.",
    )
    options: tuple[tuple[str, str], ...] = setting(
        (),
        flag="--option",
        multiple=True,
        parse=_options,
        metavar="KEY=VALUE",
        help="An importer option (repeatable), e.g. --option repo=org/repo.",
    )
    quiet: bool = setting(False, help="No progress bar.")
    call_timeout_seconds: float = setting(
        60.0, cli=False, help="Deadline of each call to a service."
    )

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.file_concurrency < 1:
            raise ValueError(f"file concurrency must be at least 1, not {self.file_concurrency}")
        if not 0 <= self.batch_size <= MAX_IMPORT_BATCH:
            raise ValueError(f"batch size must be between 0 and {MAX_IMPORT_BATCH}")
        problem = client_tls_problem(self.tls_ca, self.tls_cert, self.tls_key)
        if problem is not None:
            raise ValueError(problem)
        if not self.dry_run and (self.model is None or self.auth is None):
            raise ValueError("--model and --auth are required (only --dry-run works without)")
        if self.new_url:
            parts = urllib.parse.urlsplit(self.new_url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"--new-url {self.new_url!r}: give the bugless web UI's base URL, "
                    "e.g. https://bugs.example.org (the redirects CSV's new URLs start with it)"
                )

    def address(self, which: ServiceAddress) -> ServiceAddress:
        """``which`` with this run's TLS files."""
        return ServiceAddress(
            which.host, which.port, ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key
        )
