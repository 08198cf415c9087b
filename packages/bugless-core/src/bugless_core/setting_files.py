"""Files that settings name: read and checked at start-up, refused in one line.

A service given a token key that is not a key, or a CA file that holds a
private key, used to start, open its database pool and then die with a
traceback from the TLS or key library, naming neither the option nor the
file. Every file a ``serve`` command reads is checked here instead, before
anything connects: a setting declares what its file must hold
(``setting(..., content=pem_certificates)``) and
:func:`bugless_core.settings.build_settings` checks it, so a refusal is one
usage error (exit status 2) saying which option, which file and what is
wrong::

    Error: --tls-key /etc/bugless/tls.key: not a PEM private key

Checkers take the file's bytes and raise :class:`ValueError` saying what is
wrong with them (never naming the file: the caller does). They import
cryptography when they run, so ``serve --help`` loads none of it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

#: What a setting's file must hold: called with the file's bytes, raises
#: :class:`ValueError` saying what is wrong (the file is named by the caller).
FileContent = Callable[[bytes], object]


class SettingFileError(ValueError):
    """A file a setting names cannot be used: missing, unreadable, or the wrong content.

    A :class:`ValueError` (bad input), not a
    :class:`~bugless_core.errors.BuglessError`, which commands report as a
    service's answer (exit status 1): this is the operator's configuration,
    reported as :class:`SettingFileRefused` (exit status 2).

    Attributes:
        option: How the operator set the file (``--tls-key``, or an option
            and its variable).
        path: The file as given.
        problem: What is wrong with it.
        message: ``"<option> <path>: <problem>"``, the line printed.
    """

    def __init__(self, option: str, path: Path | str, problem: str) -> None:
        """Name the option, the file and the problem."""
        self.option = option
        self.path = path
        self.problem = problem
        self.message = f"{option} {path}: {problem}"
        super().__init__(self.message)


class SettingFileRefused(click.ClickException):
    """:class:`SettingFileError` as a command reports it: one line, exit status 2.

    Exit status 2 is bad usage or configuration (:mod:`bugless_core.cli`),
    as for every refusal at start. Not a :class:`click.UsageError`: the
    command line is well formed, and its usage text would only push the line
    that matters down a pod's log.
    """

    exit_code = 2

    def __init__(self, error: SettingFileError) -> None:
        """Report ``error``'s message."""
        super().__init__(error.message)
        self.error = error


def read_setting_file(option: str, path: Path) -> bytes:
    """The bytes of the file ``option`` names.

    Raises:
        SettingFileError: it does not exist, is a directory, or cannot be read.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SettingFileError(option, path, "no such file") from exc
    except IsADirectoryError as exc:
        raise SettingFileError(option, path, "is a directory, not a file") from exc
    except PermissionError as exc:
        raise SettingFileError(option, path, "cannot be read: permission denied") from exc
    except OSError as exc:
        detail = exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__
        raise SettingFileError(option, path, f"cannot be read: {detail}") from exc


def check_setting_directory(option: str, path: Path) -> None:
    """Check that ``option`` names a directory this process can list.

    Raises:
        SettingFileError: it does not exist, is a file, or cannot be listed.
    """
    try:
        with os.scandir(path):
            pass
    except FileNotFoundError as exc:
        raise SettingFileError(option, path, "no such directory") from exc
    except NotADirectoryError as exc:
        raise SettingFileError(option, path, "is a file, not a directory") from exc
    except PermissionError as exc:
        raise SettingFileError(option, path, "cannot be listed: permission denied") from exc
    except OSError as exc:
        detail = exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__
        raise SettingFileError(option, path, f"cannot be listed: {detail}") from exc


def check_setting_file(option: str, path: Path, content: FileContent | None) -> bytes:
    """Read the file ``option`` names and check that it holds ``content``; its bytes.

    Raises:
        SettingFileError: it cannot be read, or ``content`` refused it.
    """
    data = read_setting_file(option, path)
    if content is not None:
        try:
            content(data)
        except ValueError as exc:
            raise SettingFileError(option, path, str(exc)) from exc
    return data


def pem_certificates(data: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM file (a certificate, a chain or a CA bundle).

    Raises:
        ValueError: it holds no PEM certificate, or one that does not parse.
    """
    from cryptography import x509  # noqa: PLC0415 - the module docstring
    from cryptography.utils import CryptographyDeprecationWarning  # noqa: PLC0415

    if b"-----BEGIN CERTIFICATE-----" not in data:
        what = " (it holds a private key)" if b"PRIVATE KEY-----" in data else ""
        raise ValueError(f"not a PEM certificate: no BEGIN CERTIFICATE block{what}")
    try:
        with warnings.catch_warnings():
            # A system CA bundle has old roots cryptography warns about (a
            # serial that is not positive) and OpenSSL, which uses the file,
            # accepts: nothing for the operator to do, so no stray line.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"not a valid PEM certificate ({exc})") from exc


def pem_private_key(data: bytes) -> PrivateKeyTypes:
    """The private key of a PEM file, which must not be encrypted (nothing could type its password).

    Raises:
        ValueError: it holds no PEM private key, an encrypted one, or one
            that does not parse.
    """
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    if b"PRIVATE KEY-----" not in data:
        what = " (it holds a certificate)" if b"BEGIN CERTIFICATE" in data else ""
        raise ValueError(f"not a PEM private key: no BEGIN PRIVATE KEY block{what}")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted: no password to give it
        raise ValueError("an encrypted private key; give it unencrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a valid PEM private key ({exc})") from exc


def check_key_pair(cert_option: str, cert: Path, key_option: str, key: Path) -> None:
    """Check that the key in ``key`` is the private key of the first certificate in ``cert``.

    Raises:
        SettingFileError: either file cannot be read or parsed (naming its
            option), or the key belongs to another certificate (naming the key's).
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    certificate = pem_certificates_of(cert_option, cert)[0]
    key_pem = check_setting_file(key_option, key, pem_private_key)
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ours = pem_private_key(key_pem).public_key().public_bytes(der, spki)
    if ours != certificate.public_key().public_bytes(der, spki):
        raise SettingFileError(
            key_option, key, f"not the private key of {cert_option} {cert} (another key pair)"
        )


def pem_certificates_of(option: str, path: Path) -> list[x509.Certificate]:
    """The certificates of the PEM file ``option`` names.

    Raises:
        SettingFileError: it cannot be read, or holds no valid certificate.
    """
    return pem_certificates(check_setting_file(option, path, pem_certificates))


__all__ = [
    "FileContent",
    "SettingFileError",
    "SettingFileRefused",
    "check_key_pair",
    "check_setting_directory",
    "check_setting_file",
    "pem_certificates",
    "pem_certificates_of",
    "pem_private_key",
    "read_setting_file",
]
