"""Typed registrars: how plugins hand their backend classes to bugless.

A registration hook receives a registrar and calls it (tox's pattern), with a
class or, better, with a *reference* to one: ``register("postgres",
"bugless_model_postgres.backend:PostgresBackend")``. A reference is imported
the first time a deployment asks for that name (:meth:`Registry.get`), never
while plugins load. Every bugless process loads every installed plugin, so an
eager registration makes the web tier and the API import the Model's database
driver, the Authenticator's password hashing and every importer, which they
never use: memory and start-up time paid for nothing (bench/JOURNAL.md,
"Attachments: memory").

The registrar refuses a second backend under a name already taken, naming
both, because a deployment that silently got the other plugin's backend would
be far harder to debug than one that refuses to start.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar, cast

from bugless_core.errors import InvalidArgument

if TYPE_CHECKING:
    from bugless_core.auth_backend import AuthenticatorBackend
    from bugless_core.blobs import BlobStore
    from bugless_core.importer import Importer
    from bugless_core.model.backend import ModelBackend
    from bugless_core.notification_channel import NotificationChannel

T = TypeVar("T", bound=type)


class DuplicateRegistrationError(Exception):
    """Two plugins registered a backend under the same name."""


class UnknownBackendError(InvalidArgument):
    """A deployment asked for a backend name no installed plugin registered."""


class BackendLoadError(Exception):
    """A registered reference could not be imported, or names the wrong class."""


def reference_of(cls: type) -> str:
    """The ``module:qualname`` reference that names ``cls``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def describe_origin(cls_or_reference: type | str) -> str:
    """Name a class (or a reference to one) and the distribution that ships it.

    A reference is described without importing it: the distribution is found
    from the top-level module name. Only error messages call it, so
    ``importlib.metadata`` is imported here, not by every command.
    """
    import importlib.metadata  # noqa: PLC0415

    reference = (
        cls_or_reference if isinstance(cls_or_reference, str) else reference_of(cls_or_reference)
    )
    module, _, qualname = reference.partition(":")
    top_module = module.split(".", 1)[0]
    dists = importlib.metadata.packages_distributions().get(top_module, [])
    origin = f"{module}.{qualname}"
    return f"{origin} (package {', '.join(sorted(set(dists)))})" if dists else origin


@dataclass
class _Entry(Generic[T]):
    """One registered name: where its class lives, and the class once imported."""

    reference: str
    cls: T | None = None

    def same_backend(self, other: _Entry[T]) -> bool:
        """Whether both name one class (a plugin seen twice, or a class and its reference)."""
        if self.cls is not None and other.cls is not None:
            return self.cls is other.cls
        return self.reference == other.reference


class Registry(Generic[T]):
    """Backends of one kind, by name, in registration order.

    Asking whether a name is registered, listing names and counting never
    import a backend; :meth:`get` and iterating do.
    """

    def __init__(self, kind: str) -> None:
        """Create an empty registry.

        Args:
            kind: What is registered, for messages ("model backend").
        """
        self.kind = kind
        self._entries: dict[str, _Entry[T]] = {}

    def register(self, target: T | str, reference: str | None = None) -> None:
        """Add a backend: ``register(Class)`` or ``register("name", "module:Class")``.

        The second form is the one plugins should use: the module is imported
        on the first :meth:`get` of ``name``, which then checks that the class
        declares that ``name``.

        Raises:
            TypeError: A class without a ``name``, or a reference not of the
                form ``module:qualname``.
            DuplicateRegistrationError: The name is taken by another backend.
        """
        if isinstance(target, str):
            name = target
            if reference is None or ":" not in reference or not name:
                msg = (
                    f"register({target!r}, {reference!r}): a {self.kind} is registered by "
                    "name and a 'module:Class' reference"
                )
                raise TypeError(msg)
            entry: _Entry[T] = _Entry(reference)
        else:
            declared = getattr(target, "name", None)
            if not isinstance(declared, str) or not declared:
                msg = f"{describe_origin(target)} has no `name`: a {self.kind} must declare one"
                raise TypeError(msg)
            name = declared
            entry = _Entry(reference_of(target), target)
        existing = self._entries.get(name)
        if existing is not None and not existing.same_backend(entry):
            msg = (
                f"{self.kind} {name!r} is registered twice: by "
                f"{describe_origin(existing.reference)} and by "
                f"{describe_origin(entry.reference)}; uninstall one of them"
            )
            raise DuplicateRegistrationError(msg)
        if existing is None or existing.cls is None:
            self._entries[name] = entry

    __call__ = register

    def get(self, name: str) -> T:
        """Return the class registered as ``name``, importing it on first use.

        Raises:
            UnknownBackendError: naming the installed choices and a close match.
            BackendLoadError: The reference does not import, or the class it
                names declares another ``name``.
        """
        try:
            entry = self._entries[name]
        except KeyError:
            installed = ", ".join(sorted(self._entries)) or "none"
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown {self.kind} {name!r}; installed: {installed}{hint}"
            if not self._entries:
                msg += f" (install a package that provides a {self.kind})"
            raise UnknownBackendError(msg) from None
        if entry.cls is None:
            entry.cls = self._resolve(name, entry.reference)
        return entry.cls

    def _resolve(self, name: str, reference: str) -> T:
        module_name, _, qualname = reference.partition(":")
        try:
            found: object = importlib.import_module(module_name)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            msg = f"the {self.kind} {name!r} ({describe_origin(reference)}) failed to load: {exc}"
            raise BackendLoadError(msg) from exc
        declared = getattr(found, "name", None)
        if not isinstance(found, type) or declared != name:
            msg = (
                f"the {self.kind} {name!r} was registered as {reference}, "
                f"which declares the name {declared!r}"
            )
            raise BackendLoadError(msg)
        return cast("T", found)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        """Every ``(name, class)``, sorted by name; imports what was not yet imported."""
        return iter([(name, self.get(name)) for name in sorted(self._entries)])

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


#: The registrar ``bugless_register_model_backends`` receives.
ModelBackendRegistrar: TypeAlias = "Registry[type[ModelBackend]]"
#: The registrar ``bugless_register_authenticators`` receives.
AuthenticatorRegistrar: TypeAlias = "Registry[type[AuthenticatorBackend]]"
#: The registrar ``bugless_register_notification_channels`` receives.
NotificationChannelRegistrar: TypeAlias = "Registry[type[NotificationChannel]]"
#: The registrar ``bugless_register_blob_stores`` receives.
BlobStoreRegistrar: TypeAlias = "Registry[type[BlobStore]]"
#: The registrar ``bugless_register_importers`` receives.
ImporterRegistrar: TypeAlias = "Registry[type[Importer]]"
