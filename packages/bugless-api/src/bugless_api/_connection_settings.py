"""Where the client's connection settings come from, and in which order: one place.

The ``bugless`` client commands and :meth:`BuglessClient.from_config` both
call :func:`connection_settings`, so a script and a command run in the same
environment connect alike. Each setting is taken from the first of:

1. the flag (``--api``; for ``from_config``, the keyword it was given),
2. the environment variable (``BUGLESS_API``),
3. the config file: ``BUGLESS_CLIENT_CONFIG``, else ``~/.config/bugless/client.toml``
   (``bugless login`` writes it)::

       api = "bugless-api.example.com:50053"
       cert = "~/.config/bugless/login.pem"
       key = "~/.config/bugless/login.key"
       ca = "~/.config/bugless/ca.pem"
       time_zone = "Europe/Berlin"

4. the default: none for ``api``, ``cert``, ``key`` and ``ca`` (a missing one
   is an error naming every place it could come from); this machine's zone,
   else UTC, for ``time_zone``.

The module imports nothing heavy: a command that fails here has not loaded
gRPC, and a certificate's expiry is read from its DER by hand (see
:func:`pem_not_after`), with ``cryptography`` only to confirm a refusal.
"""

from __future__ import annotations

import binascii
import datetime
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bugless_core.errors import InvalidArgument

#: Where ``bugless login`` writes, and every command reads, the settings.
DEFAULT_CONFIG = Path("~/.config/bugless/client.toml")
#: The variable that names another config file.
CONFIG_ENV = "BUGLESS_CLIENT_CONFIG"


@dataclass(frozen=True)
class Setting:
    """One connection setting, declared once: its flag, variable, config key and help."""

    name: str
    flag: str
    env: str
    help: str


#: The settings in the order their options are listed.
SETTINGS = (
    Setting("api", "--api", "BUGLESS_API", "host:port of the bugless API"),
    Setting("cert", "--cert", "BUGLESS_CERT", "PEM client certificate"),
    Setting("key", "--key", "BUGLESS_KEY", "private key of --cert"),
    Setting("ca", "--ca", "BUGLESS_CA", "CA bundle of the server's certificate"),
    Setting(
        "time_zone",
        "--time-zone",
        "BUGLESS_TIME_ZONE",
        "IANA time zone that days in queries (created>today-7) are counted in",
    ),
)
_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the API is, which certificate to present, and the queries' time zone.

    Attributes:
        api: ``host:port`` of the API frontend.
        cert: PEM client certificate.
        key: Its private key.
        ca: PEM bundle that signed the server's certificate.
        time_zone: IANA zone days in queries are counted in ("" for UTC).
    """

    api: str
    cert: Path
    key: Path
    ca: Path
    time_zone: str = ""


def _mistake(message: str) -> InvalidArgument:
    """Found before anything is sent: the CLI exits 2, a script sees origin ``client``."""
    return InvalidArgument(message, metadata={"origin": "client"})


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file: ``BUGLESS_CLIENT_CONFIG``, else ``~/.config/bugless/client.toml``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or str(DEFAULT_CONFIG)).expanduser()


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's settings ({} when there is none).

    Raises:
        InvalidArgument: (origin ``client``) it cannot be read or is not TOML.
    """
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _mistake(f"config file {path}: {exc}") from exc


def connection_settings(
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flags_are_options: bool = False,
) -> ConnectionSettings:
    """Each setting from its flag, else its variable, else the config file, else the default.

    Args:
        flags: Values given explicitly, by setting name (``api``, ``cert``,
            ``key``, ``ca``, ``time_zone``); None and "" mean not given.
        environ: The variables to read (default: ``os.environ``).
        flags_are_options: Name the command-line flags in errors
            (``--api``, ``give --cert``), for the commands.

    Raises:
        InvalidArgument: (``metadata["origin"] == "client"``) a setting is
            missing (every place it could come from is named), the config
            file is malformed, a file it names does not exist (``bugless
            logout`` deleted it: run ``bugless login``) or the certificate
            has expired.
    """
    given = flags or {}
    env = os.environ if environ is None else environ
    path = config_path(env)
    from_file = read_config_file(path)
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    missing: list[str] = []
    for setting in SETTINGS:
        for where, value in (
            ("flag", given.get(setting.name)),
            ("env", env.get(setting.env)),
            ("file", from_file.get(setting.name)),
        ):
            if value:
                values[setting.name], origin[setting.name] = str(value), where
                break
        else:
            if setting.name != "time_zone":
                places = [setting.env, f"{setting.name} in {path}"]
                if flags_are_options:
                    places.insert(0, setting.flag)
                missing.append(f"{places[0]} (or {', or '.join(places[1:])})")
    if missing:
        raise _mistake(
            "not configured: " + "; ".join(missing) + " (`bugless login` writes the file)"
        )
    files = {name: Path(values[name]).expanduser() for name in ("cert", "key", "ca")}
    for name, file in files.items():
        if file.is_file():
            continue
        setting = _BY_NAME[name]
        label = {"flag": setting.flag, "env": setting.env}.get(origin[name], f"{name} in {path}")
        if name in {"cert", "key"} and origin[name] == "file" and not file.exists():
            # `bugless logout` deletes the login certificate the file names.
            also = f" (or give {setting.flag})" if flags_are_options else ""
            raise _mistake(
                f"not logged in: {file}, the {name} {path} names, does not exist; "
                f"run `bugless login`{also}"
            )
        raise _mistake(f"{label}: {file} is not a readable file")
    refuse_expired(files["cert"])
    zone = values.get("time_zone") or local_zone_name()
    return ConnectionSettings(api=values["api"], **files, time_zone=zone)


def local_zone_name() -> str:
    """This machine's time zone as an IANA name, or "" (UTC) when none can be told.

    ``TZ`` first (as every other program on the machine reads it), then the
    zone file ``/etc/localtime`` links to: a person's ``created>today-7`` at a
    terminal means their own today, as it does in their browser.
    """
    import zoneinfo  # noqa: PLC0415

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = Path("/etc/localtime").resolve(strict=True).as_posix()
    except OSError:
        target = ""
    if "/zoneinfo/" in target:
        name = target.split("/zoneinfo/", 1)[1]
        candidates.append(name.removeprefix("posix/").removeprefix("right/"))
    for name in candidates:
        if not name or name.startswith("/"):
            continue
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return ""


def refuse_expired(cert_file: Path) -> None:
    """Say so, instead of failing the TLS handshake, when the certificate has expired.

    A bot runs a client command many times, and importing ``cryptography.x509``
    costs ~25 ms of CPU per run; so the certificate's notAfter is first read
    straight from its DER (:func:`pem_not_after`). That fast path only ever
    lets a certificate through: one it finds expired, or cannot read, goes
    through ``cryptography``, which says (or lets the TLS layer say) exactly
    what it always said. Nothing is cached, so a certificate replaced at the
    same path is judged afresh.

    Raises:
        InvalidArgument: (origin ``client``) it has expired: run ``bugless login``.
    """
    try:
        pem = cert_file.read_bytes()
    except OSError:
        return  # the TLS layer reports an unreadable certificate precisely
    not_after = pem_not_after(pem)
    if not_after is not None and not_after >= datetime.datetime.now(datetime.UTC):
        return
    from cryptography import x509  # noqa: PLC0415

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return  # the TLS layer reports an unreadable certificate precisely
    if certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise _mistake(
            f"the certificate {cert_file} expired at "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; run `bugless login` again"
        )


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def pem_not_after(pem: bytes) -> datetime.datetime | None:
    """The notAfter of the PEM file's first certificate, or None on any doubt.

    Reads the DER by hand (RFC 5280 section 4.1: Certificate, tbsCertificate,
    [0] version, serialNumber, signature, issuer, validity) and accepts only
    the two time forms RFC 5280 allows (``YYMMDDHHMMSSZ``, ``YYYYMMDDHHMMSSZ``);
    anything else is None, and the caller asks ``cryptography``. The stdlib
    ``ssl`` module decodes a certificate's dates only through private APIs.
    """
    start = pem.find(b"-----BEGIN ")
    if start < 0 or not pem.startswith(_PEM_BEGIN, start):
        return None
    end = pem.find(_PEM_END, start)
    if end < 0:
        return None
    try:
        der = binascii.a2b_base64(pem[start + len(_PEM_BEGIN) : end], strict_mode=False)
        tag, body, _ = _der_item(der, 0)  # Certificate
        if tag != 0x30:
            return None
        tag, position, _ = _der_item(der, body)  # tbsCertificate
        if tag != 0x30:
            return None
        tag, _, after = _der_item(der, position)
        if tag == 0xA0:  # [0] version (absent in a v1 certificate)
            tag, _, after = _der_item(der, after)
        for expected in (0x02, 0x30, 0x30):  # serialNumber, signature, issuer
            if tag != expected:
                return None
            tag, position, after = _der_item(der, after)
        if tag != 0x30:  # validity
            return None
        _, _, after = _der_item(der, position)  # notBefore
        tag, value, value_end = _der_item(der, after)  # notAfter
        return _der_time(tag, der[value:value_end])
    except (ValueError, IndexError):
        return None


def _der_item(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, value start and value end of the DER item at ``offset``."""
    tag = der[offset]
    length = der[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or start + size > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    if start + length > len(der):
        raise ValueError("truncated DER")
    return tag, start, start + length


def _der_time(tag: int, value: bytes) -> datetime.datetime | None:
    """A UTCTime (0x17) or GeneralizedTime (0x18) in RFC 5280's form, else None."""
    text = value.decode("ascii")
    if tag == 0x17 and len(text) == 13:
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18 or len(text) != 15:
        return None
    if not (text.endswith("Z") and text[:14].isdigit()):
        return None
    month, day, hour, minute, second = (int(text[i : i + 2]) for i in range(4, 14, 2))
    return datetime.datetime(int(text[:4]), month, day, hour, minute, second, tzinfo=datetime.UTC)
