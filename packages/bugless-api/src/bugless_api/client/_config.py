"""The client's connection settings found where the ``bugless`` commands find them.

A script run by someone who did ``bugless login`` (or by a bot whose
environment carries ``BUGLESS_API``/``BUGLESS_CERT``/``BUGLESS_KEY``/
``BUGLESS_CA``) should connect as the commands do, without knowing where
``login`` keeps the certificate: :meth:`BuglessClient.from_config` reads the
same variables, then the same ``client.toml`` (``BUGLESS_CLIENT_CONFIG``, else
``~/.config/bugless/client.toml``), each setting on its own, the variable first.
"""

from __future__ import annotations

import datetime
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bugless_api.client._base import client_mistake

#: Where ``bugless login`` writes, and every command reads, the settings.
DEFAULT_CONFIG = Path("~/.config/bugless/client.toml")


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the API is, which certificate to present, and the queries' time zone."""

    api: str
    cert: Path
    key: Path
    ca: Path
    time_zone: str


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise client_mistake(f"config file {path}: {exc}") from exc


def _check_not_expired(cert: Path) -> None:
    """An expired certificate (a login of yesterday) is named, not a failed handshake."""
    from bugless_api.cli._common import _pem_not_after  # noqa: PLC0415

    try:
        not_after = _pem_not_after(cert.read_bytes())
    except OSError as exc:
        raise client_mistake(f"cert: {cert} cannot be read ({exc.strerror})") from exc
    if not_after is not None and not_after < datetime.datetime.now(datetime.UTC):
        raise client_mistake(
            f"the certificate {cert} expired at {not_after:%Y-%m-%d %H:%M} UTC; "
            "run `bugless login` again"
        )


def connection_settings(environ: Mapping[str, str] | None = None) -> ConnectionSettings:
    """The settings the ``bugless`` commands would use, from ``environ`` and the config file.

    Raises:
        InvalidArgument: (``metadata["origin"] == "client"``) a setting is
            missing, the config file is malformed, a file it names does not
            exist (``bugless logout`` deleted it: run ``bugless login``) or
            the certificate has expired.
    """
    env = os.environ if environ is None else environ
    path = Path(env.get("BUGLESS_CLIENT_CONFIG") or str(DEFAULT_CONFIG)).expanduser()
    from_file = _read(path)
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in ("api", "cert", "key", "ca"):
        value = env.get(f"BUGLESS_{name.upper()}") or from_file.get(name)
        if value:
            values[name] = str(value)
        else:
            missing.append(f"BUGLESS_{name.upper()} (or {name} in {path})")
    if missing:
        raise client_mistake(
            "not configured: " + "; ".join(missing) + " (`bugless login` writes the file)"
        )
    files = {name: Path(values[name]).expanduser() for name in ("cert", "key", "ca")}
    for name, file in files.items():
        if not file.is_file():
            hint = "; run `bugless login`" if name in {"cert", "key"} else ""
            raise client_mistake(f"{name}: {file} is not a readable file{hint}")
    _check_not_expired(files["cert"])
    zone = env.get("BUGLESS_TIME_ZONE") or from_file.get("time_zone")
    if not zone:
        from bugless_api.cli._common import local_zone_name  # noqa: PLC0415

        zone = local_zone_name()
    return ConnectionSettings(api=values["api"], time_zone=str(zone), **files)
