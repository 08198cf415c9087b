"""Typed registrars: how plugins hand their backend classes to bugless.

A registration hook receives a registrar and calls it with a class (tox's
pattern). The registrar refuses a second class under a name already taken,
naming both, because a deployment that silently got the other plugin's
backend would be far harder to debug than one that refuses to start.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Iterator
from typing import Generic, TypeVar

from bugless_core.auth_backend import AuthenticatorBackend
from bugless_core.blobs import BlobStore
from bugless_core.errors import InvalidArgument
from bugless_core.importer import Importer
from bugless_core.model.backend import ModelBackend
from bugless_core.notification_channel import NotificationChannel

T = TypeVar("T", bound=type)


class DuplicateRegistrationError(Exception):
    """Two plugins registered a backend under the same name."""


class UnknownBackendError(InvalidArgument):
    """A deployment asked for a backend name no installed plugin registered."""


def describe_origin(cls: type) -> str:
    """Name a class and the distribution that ships it, for error messages."""
    top_module = cls.__module__.split(".", 1)[0]
    dists = importlib.metadata.packages_distributions().get(top_module, [])
    origin = f"{cls.__module__}.{cls.__qualname__}"
    return f"{origin} (package {', '.join(sorted(set(dists)))})" if dists else origin


class Registry(Generic[T]):
    """Backends of one kind, by name, in registration order."""

    def __init__(self, kind: str) -> None:
        """Create an empty registry.

        Args:
            kind: What is registered, for messages ("model backend").
        """
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> None:
        """Add ``cls`` under ``cls.name``; a taken name raises with both origins."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            msg = f"{describe_origin(cls)} has no `name`: a {self.kind} must declare one"
            raise TypeError(msg)
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            msg = (
                f"{self.kind} {name!r} is registered twice: by {describe_origin(existing)} "
                f"and by {describe_origin(cls)}; uninstall one of them"
            )
            raise DuplicateRegistrationError(msg)
        self._classes[name] = cls

    __call__ = register

    def get(self, name: str) -> T:
        """Return the class registered as ``name``.

        Raises:
            UnknownBackendError: naming the installed choices and a close match.
        """
        try:
            return self._classes[name]
        except KeyError:
            installed = ", ".join(sorted(self._classes)) or "none"
            close = difflib.get_close_matches(name, self._classes, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown {self.kind} {name!r}; installed: {installed}{hint}"
            if not self._classes:
                msg += f" (install a package that provides a {self.kind})"
            raise UnknownBackendError(msg) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._classes.items()))

    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


#: The registrar ``bugless_register_model_backends`` receives.
ModelBackendRegistrar = Registry[type[ModelBackend]]
#: The registrar ``bugless_register_authenticators`` receives.
AuthenticatorRegistrar = Registry[type[AuthenticatorBackend]]
#: The registrar ``bugless_register_notification_channels`` receives.
NotificationChannelRegistrar = Registry[type[NotificationChannel]]
#: The registrar ``bugless_register_blob_stores`` receives.
BlobStoreRegistrar = Registry[type[BlobStore]]
#: The registrar ``bugless_register_importers`` receives.
ImporterRegistrar = Registry[type[Importer]]
