"""The Authenticator's settings: typed dataclasses whose fields declare their flags.

Each field carries its flag, ``BUGLESS_AUTH_*`` variable, default and help
(:func:`bugless_core.settings.setting`); ``bugless auth serve``, ``migrate``
and ``user ...`` generate their options from them and receive the objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from bugless_auth.policy import load_policy
from bugless_core.errors import BuglessError
from bugless_core.settings import group, setting
from bugless_core.sql_names import quote_schema


@dataclasses.dataclass(frozen=True, kw_only=True)
class PasswordHashing:
    """argon2id cost parameters for the local store.

    The defaults are RFC 9106's "second recommended option" scaled to a server
    answering logins interactively (~50 ms on one core). Tests lower them; a
    hash made with other parameters is re-hashed on the next successful login.

    Attributes:
        time_cost: Passes over memory.
        memory_kib: Memory per hash, in KiB.
        parallelism: Lanes.
    """

    time_cost: int = setting(
        3, flag="--argon2-time-cost", help="argon2id passes for new password hashes."
    )
    memory_kib: int = setting(
        65_536,
        flag="--argon2-memory-kib",
        help="argon2id memory per hash in KiB for new password hashes.",
    )
    parallelism: int = setting(
        4, flag="--argon2-parallelism", help="argon2id lanes for new password hashes."
    )

    def __post_init__(self) -> None:
        for name in ("time_cost", "memory_kib", "parallelism"):
            value = getattr(self, name)
            if value < 1:
                flag = "--argon2-" + name.replace("_", "-")
                raise ValueError(f"{name} ({flag}) must be at least 1, not {value}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThrottleSettings:
    """How many failed password attempts are tolerated before callers must wait.

    The lockout policy is described in :mod:`bugless_auth.throttle`. Each
    bucket holds ``*_limit`` attempts and refills evenly over
    ``window_seconds``: a burst of failures trips it at once, while a steady
    trickle is held to ``limit`` per window. The buckets are kept in the
    Authenticator's database, so every replica enforces the same limits.

    Attributes:
        per_user_address_limit: Failed attempts per (username, client
            address) per window; tripping it refuses only that pair.
        per_user_limit: Failed attempts per username over all addresses per
            window. Must be larger than ``per_user_address_limit``, so that
            no single address can lock a user out.
        per_address_limit: Failed attempts per client address per window
            (against spraying one password over many accounts; high, since
            many people can share a NAT address).
        window_seconds: The window the limits refill over.
    """

    per_user_address_limit: int = setting(
        10,
        flag="--throttle-user-address-limit",
        env="BUGLESS_AUTH_THROTTLE_USER_ADDRESS_LIMIT",
        help="Failed password attempts per (username, client address) per window.",
    )
    per_user_limit: int = setting(
        100,
        flag="--throttle-user-limit",
        env="BUGLESS_AUTH_THROTTLE_USER_LIMIT",
        help="Failed password attempts per username over all addresses per window "
        "(more than --throttle-user-address-limit).",
    )
    per_address_limit: int = setting(
        100,
        flag="--throttle-address-limit",
        env="BUGLESS_AUTH_THROTTLE_ADDRESS_LIMIT",
        help="Failed password attempts per client address per window.",
    )
    window_seconds: float = setting(
        300.0,
        flag="--throttle-window-seconds",
        env="BUGLESS_AUTH_THROTTLE_WINDOW_SECONDS",
        help="The window the throttle limits refill over.",
    )

    def __post_init__(self) -> None:
        for name, flag in (
            ("per_user_address_limit", "--throttle-user-address-limit"),
            ("per_user_limit", "--throttle-user-limit"),
            ("per_address_limit", "--throttle-address-limit"),
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({flag}) must be at least 1, not {getattr(self, name)}")
        if self.per_user_limit <= self.per_user_address_limit:
            raise ValueError(
                f"per_user_limit (--throttle-user-limit) {self.per_user_limit} must be more "
                f"than per_user_address_limit (--throttle-user-address-limit) "
                f"{self.per_user_address_limit}: otherwise one address can lock a user out"
            )
        if self.window_seconds <= 0:
            raise ValueError(
                f"window_seconds (--throttle-window-seconds) must be more than 0, "
                f"not {self.window_seconds}"
            )


def parse_authenticator_options(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """``NAME.KEY=VALUE`` texts as ``{name: {key: value}}`` (keys lower-cased).

    Raises:
        ValueError: a text is not of that shape (the message shows one that is).
    """
    options: dict[str, dict[str, str]] = {}
    for value in values:
        key, sep, text = value.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not name.strip() or not option.strip():
            raise ValueError(
                f"{value!r}: use NAME.KEY=VALUE, e.g. tls.mapping_file=/etc/bugless/certs.toml"
            )
        options.setdefault(name.strip(), {})[option.strip().lower()] = text
    return options


def _ca_certificate(data: bytes) -> object:
    """What a people CA certificate file must hold (checked when ``serve`` starts)."""
    from bugless_auth.people_ca import ca_certificate_from_pem  # noqa: PLC0415 - --help

    return ca_certificate_from_pem(data)


def _ca_key(data: bytes) -> object:
    """What ``--people-ca-key`` must hold (checked when ``serve`` starts)."""
    from bugless_auth.people_ca import ca_key_from_pem  # noqa: PLC0415 - --help

    return ca_key_from_pem(data)


def _token_key(data: bytes) -> object:
    """What a ``--token-key-file`` must hold: a key :func:`bugless_auth.tokens.load_key` reads."""
    from bugless_auth.tokens import parse_key  # noqa: PLC0415 - --help loads no key code

    origin = "the file"
    try:
        return parse_key(data, origin=origin)
    except ValueError as exc:
        problem = str(exc).removeprefix(f"{origin}: ")
        raise ValueError(f"not a usable token key: {problem}") from exc


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeopleCaSettings:
    """The people CA (issue 19): short-lived client certificates for people.

    Off unless both files are given. The CA (or an intermediate) is a
    mounted Secret; the API must trust its certificate beside the bot CA.

    Attributes:
        cert_file: The CA certificate, PEM.
        key_file: Its private key, PEM.
        previous_cert_files: Certificates of people CAs this one replaced:
            the people certificates they signed are still accepted (the
            rotation's overlap), and they sign nothing. Listed while the
            people holding such certificates move to new ones, removed once
            those have expired (at most ``max_seconds`` after the switch).
            In a rotation's first step the incoming CA is listed here, so
            every replica and the API trust it before any replica signs
            with it.
        default_seconds: Lifetime of a certificate when the person asks for none.
        max_seconds: Longest lifetime anyone may ask for.
        issue_per_hour: Certificates one person may obtain per hour.
        device_login_seconds: How long a device login waits for approval.
    """

    cert_file: Path | None = setting(
        None,
        flag="--people-ca-cert",
        env="BUGLESS_AUTH_PEOPLE_CA_CERT",
        must_exist=True,
        content=_ca_certificate,
        help="The people CA's certificate (PEM); with --people-ca-key, people can obtain "
        "client certificates for the API.",
    )
    key_file: Path | None = setting(
        None,
        flag="--people-ca-key",
        env="BUGLESS_AUTH_PEOPLE_CA_KEY",
        must_exist=True,
        content=_ca_key,
        key_of="cert_file",
        secret=True,
        help="The people CA's private key (PEM).",
    )
    previous_cert_files: tuple[Path, ...] = setting(
        (),
        flag="--people-ca-previous-cert",
        env="BUGLESS_AUTH_PEOPLE_CA_PREVIOUS_CERTS",
        multiple=True,
        must_exist=True,
        content=_ca_certificate,
        help="The certificate (PEM) of a people CA that --people-ca-cert replaced, or in a "
        "rotation's first step the one about to replace it (repeatable; env: paths separated "
        "by ':'): the certificates it signed are accepted, and it signs none. Remove a replaced "
        "one once they have expired (--people-cert-max-seconds).",
    )
    default_seconds: float = setting(
        12 * 3600.0,
        flag="--people-cert-default-seconds",
        env="BUGLESS_AUTH_PEOPLE_CERT_DEFAULT_SECONDS",
        help="Lifetime of a person's certificate when they ask for none.",
    )
    max_seconds: float = setting(
        7 * 24 * 3600.0,
        flag="--people-cert-max-seconds",
        env="BUGLESS_AUTH_PEOPLE_CERT_MAX_SECONDS",
        help="Longest lifetime a person's certificate may have.",
    )
    issue_per_hour: int = setting(
        20,
        flag="--people-cert-issue-per-hour",
        env="BUGLESS_AUTH_PEOPLE_CERT_ISSUE_PER_HOUR",
        help="Certificates one person may obtain per hour.",
    )
    device_login_seconds: float = setting(
        600.0,
        flag="--device-login-seconds",
        env="BUGLESS_AUTH_DEVICE_LOGIN_SECONDS",
        help="How long a `bugless login` device code waits for approval.",
    )

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("--people-ca-cert and --people-ca-key go together")
        if self.previous_cert_files and self.cert_file is None:
            raise ValueError(
                "--people-ca-previous-cert needs --people-ca-cert and --people-ca-key: an "
                "earlier people CA is trusted only beside the one that replaced it"
            )
        if not 0 < self.default_seconds <= self.max_seconds:
            raise ValueError(
                "--people-cert-default-seconds must be more than 0 and at most "
                "--people-cert-max-seconds"
            )
        if self.issue_per_hour < 1:
            raise ValueError("--people-cert-issue-per-hour must be at least 1")
        if self.device_login_seconds < 30:
            raise ValueError("--device-login-seconds must be at least 30")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Everything the Authenticator is configured with, field by field.

    Attributes:
        database_url: asyncpg DSN of the Authenticator's database.
        schema: PostgreSQL schema of its tables (its own, never the Model's).
        database_dialect: ``postgres`` or ``cockroach`` (:mod:`bugless_auth._dialect`):
            what the store may rely on; checked against the server on open.
        authenticators: Enabled backends, in the order password checks try them.
        authenticator_options: Per-backend options (``{"tls": {"mapping_file":
            "..."}}``), passed to each backend's ``open`` as strings. The
            command adds the ``BUGLESS_AUTH_<NAME>_<KEY>`` variables of the
            enabled backends under those given as flags.
        token_keys: Key files; the first signs new tokens, all verify (list an
            old key after the new one during a rotation, remove it once tokens
            signed by it have expired). PEM Ed25519 (EdDSA), a JWK JSON, or a
            shared secret of 32+ bytes (HS256).
        token_ttl_seconds: Lifetime of a session token.
        token_issuer: ``iss`` of issued tokens, checked on validation.
        assertion_ttl_seconds: Lifetime of identity assertions (SECURITY.md).
        cache_ttl_seconds: How long validated tokens are served from memory,
            and user records while the users' change feed cannot be followed:
            then the bound on how stale a rename or a disable can be on a
            replica that did not make it.
        cache_backstop_seconds: How long a user record is served from memory
            while the change feed is followed (each replica forgets the users
            it names within ``user_changes_seconds``): a bound in case a
            change escaped the feed.
        user_changes_seconds: How often each replica reads the users' change
            feed: about how late a change made through another replica shows.
        user_changes_retention_seconds: How long the feed keeps a change; a
            reader further behind (a frontend cut off that long) starts over,
            unless the replica it asks still holds the changes in memory
            (its follower's last pages), which then answers them exactly.
        cache_max_entries: Bound on cached users (each cache, LRU eviction).
        policy: Group to permissions, e.g. ``{"admins": ["admin"], "*":
            ["create_hotlist"]}``; ``None`` means the default (admins get admin and
            ``import_issues``, everyone ``create_hotlist``).
        throttle: Failed-password throttling.
        hashing: argon2id parameters.
        people_ca: The people CA (client certificates for people).
        min_password_length: Shortest password the local store accepts.
        pool_max_size: Database connections per replica.
    """

    database_url: str = setting(
        env=("BUGLESS_AUTH_DATABASE_URL", "BUGLESS_DATABASE_URL"),
        secret=True,
        help="postgresql://user:pass@host:port/db (also read from BUGLESS_DATABASE_URL).",
    )
    schema: str = setting("bugless_auth", help="PostgreSQL schema of the Authenticator's tables.")
    database_dialect: str = setting(
        "postgres",
        choices=("postgres", "cockroach"),
        help="postgres, or cockroach: CockroachDB (or PostgreSQL defaulting to SERIALIZABLE), "
        "with no advisory locks, 40001 retries and a lease as the migration lock.",
    )
    authenticators: tuple[str, ...] = setting(
        ("local",),
        flag="--authenticator",
        env="BUGLESS_AUTH_AUTHENTICATORS",
        help="Enabled backends, comma-separated, in the order password checks try them; "
        "`bugless plugins` lists the installed ones.",
    )
    authenticator_options: Mapping[str, Mapping[str, str]] = setting(
        default_factory=dict,
        flag="--authenticator-option",
        env=(),
        multiple=True,
        parse=parse_authenticator_options,
        metavar="NAME.KEY=VALUE",
        help="A backend option (repeatable), e.g. tls.mapping_file=PATH; also read from "
        "BUGLESS_AUTH_<NAME>_<KEY> variables.",
    )
    token_keys: tuple[Path, ...] = setting(
        (),
        flag="--token-key-file",
        env="BUGLESS_AUTH_TOKEN_KEY_FILES",
        multiple=True,
        must_exist=True,
        content=_token_key,
        help="Token key (repeatable; env: paths separated by ':'); the first signs, all "
        "verify. Ed25519 PEM, a JWK, or a 32+ byte secret (HS256).",
    )
    token_ttl_seconds: float = setting(12 * 3600.0, help="Lifetime of session tokens.")
    token_issuer: str = setting("bugless-auth", help="`iss` of issued tokens.")
    assertion_ttl_seconds: float = setting(
        300.0,
        help="Lifetime of the identity assertions frontends forward to the Model; bounds "
        "how long one outlives its session at the Model (it refuses ended sessions too).",
    )
    cache_ttl_seconds: float = setting(
        30.0,
        help="How long validated tokens are served from memory, and user records while the "
        "users' change feed cannot be read.",
    )
    cache_backstop_seconds: float = setting(
        600.0,
        help="How long user records are served from memory while the users' change feed "
        "is followed (changed users are forgotten within --user-changes-seconds).",
    )
    user_changes_seconds: float = setting(
        1.0,
        help="How often each replica reads the users' change feed (how late a change "
        "made through another replica shows).",
    )
    user_changes_retention_seconds: float = setting(
        3600.0,
        help="How long the users' change feed keeps a change (a reader further behind "
        "starts over, unless a replica still holds the changes in memory).",
    )
    cache_max_entries: int = setting(100_000, help="Users kept in memory (per cache, LRU).")
    policy: Mapping[str, tuple[str, ...]] | None = setting(
        None,
        parse=load_policy,
        metavar="JSON|TOML|PATH",
        help='Group to permissions, JSON/TOML inline or a file path, e.g. \'{"admins": '
        '["admin"]}\'. Default: admins get admin and import_issues, everyone create_hotlist.',
    )
    throttle: ThrottleSettings = group(ThrottleSettings)
    hashing: PasswordHashing = group(PasswordHashing, env_prefix="BUGLESS_AUTH_ARGON2_")
    people_ca: PeopleCaSettings = group(PeopleCaSettings)
    min_password_length: int = setting(8, help="Shortest password the local store accepts.")
    pool_max_size: int = setting(10, help="Database connections per replica.")

    def __post_init__(self) -> None:
        try:
            quote_schema(self.schema)
        except BuglessError as exc:  # the same refusal as every other field's
            raise ValueError(exc.message) from exc
        if not self.authenticators:
            raise ValueError("authenticators: enable at least one (e.g. local)")
        if len(set(self.authenticators)) != len(self.authenticators):
            raise ValueError(f"authenticators: {list(self.authenticators)} names one twice")
        if self.token_ttl_seconds < 1:
            raise ValueError(f"token_ttl_seconds must be at least 1, not {self.token_ttl_seconds}")
        if not 10 <= self.assertion_ttl_seconds <= 3600:
            raise ValueError(
                f"assertion_ttl_seconds must be between 10 and 3600, not "
                f"{self.assertion_ttl_seconds}"
            )
        if self.cache_ttl_seconds <= 0:
            raise ValueError(f"cache_ttl_seconds must be more than 0, not {self.cache_ttl_seconds}")
        if not 0 < self.user_changes_seconds <= 60:
            raise ValueError(
                f"user_changes_seconds must be more than 0 and at most 60, "
                f"not {self.user_changes_seconds}"
            )
        if self.user_changes_retention_seconds < 60:
            raise ValueError(
                f"user_changes_retention_seconds must be at least 60, "
                f"not {self.user_changes_retention_seconds}"
            )
        for name in ("cache_max_entries", "min_password_length", "pool_max_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


def options_from_environment(
    environ: Mapping[str, str], names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Backend options from ``BUGLESS_AUTH_<NAME>_<KEY>`` variables, for enabled backends."""
    options: dict[str, dict[str, str]] = {}
    for name in names:
        prefix = f"BUGLESS_AUTH_{name.upper()}_"
        for key, value in environ.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                options.setdefault(name, {})[key[len(prefix) :].lower()] = value
    return options
