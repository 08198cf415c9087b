"""Building a plugin manager: entry point loading and the backend registries.

There is no module-level plugin manager. Every process (and every test) calls
:func:`load_plugins` and passes the result along, so tests can build one with
exactly the plugins they want and nothing leaks between them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import pluggy

from bugless_core import hookspecs
from bugless_core._entry_points import EntryPoint, group_entry_points
from bugless_core.registry import Registry

if TYPE_CHECKING:
    import importlib.metadata

    from bugless_core.auth_backend import AuthenticatorBackend
    from bugless_core.blobs import BlobStore
    from bugless_core.importer import Importer
    from bugless_core.model.backend import ModelBackend
    from bugless_core.notification_channel import NotificationChannel
    from bugless_proto import v1

ENTRY_POINT_GROUP = "bugless"
_log = logging.getLogger(__name__)


class PluginLoadError(Exception):
    """An installed plugin could not be loaded; the message names it."""


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, for ``bugless plugins``.

    Which installed package provides the plugin, and its version, are looked
    up the first time someone asks (``bugless plugins``), not when the plugin
    is loaded: every service loads its plugins at start, and reading package
    metadata costs far more than loading them (for a plugin not loaded by an
    entry point, finding its package means reading every installed
    package's metadata: ~0.4 s of start-up with ~170 installed).

    Attributes:
        name: The plugin's name (its entry point's, or ``bugless-core``).
        module: The module (or the class of the object) registered.
    """

    name: str
    module: str
    _entry_point: EntryPoint | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def _distribution(self) -> importlib.metadata.Distribution | None:
        import importlib.metadata  # noqa: PLC0415 - only `bugless plugins` asks

        if self._entry_point is not None:
            names = [self._entry_point.distribution]
        else:
            top = self.module.split(".", 1)[0]
            # An editable install (a checkout's ``pip install -e``) may record no
            # top-level names; bugless' packages are named after their module.
            names = importlib.metadata.packages_distributions().get(top, [])[:1] or [
                top.replace("_", "-")
            ]
        for dist_name in names:
            try:
                return importlib.metadata.distribution(dist_name)
            except importlib.metadata.PackageNotFoundError:
                return None
        return None

    @functools.cached_property
    def distribution(self) -> str:
        """The installed package that provides the plugin (``-``: none found)."""
        dist = self._distribution
        return dist.name if dist is not None else "-"

    @functools.cached_property
    def version(self) -> str:
        """That package's version (``-``: no package found)."""
        dist = self._distribution
        return dist.version if dist is not None else "-"


@dataclass
class Plugins:
    """A plugin manager together with what its plugins registered.

    Attributes:
        manager: The pluggy manager (call event hooks through ``manager.hook``).
        model_backends: Model backend classes by name.
        authenticators: Authenticator backend classes by name.
        notification_channels: Notification channel classes by name.
        blob_stores: Blob store classes (attachment content) by name.
        importers: Importer classes (``bugless import <source>``) by name.
        loaded: The plugins that were loaded, in load order.
    """

    manager: pluggy.PluginManager
    model_backends: Registry[type[ModelBackend]] = field(
        default_factory=lambda: Registry("model backend")
    )
    authenticators: Registry[type[AuthenticatorBackend]] = field(
        default_factory=lambda: Registry("authenticator backend")
    )
    notification_channels: Registry[type[NotificationChannel]] = field(
        default_factory=lambda: Registry("notification channel")
    )
    blob_stores: Registry[type[BlobStore]] = field(default_factory=lambda: Registry("blob store"))
    importers: Registry[type[Importer]] = field(default_factory=lambda: Registry("importer"))
    loaded: list[PluginInfo] = field(default_factory=list)

    @property
    def watches_issue_changes(self) -> bool:
        """Whether any loaded plugin implements ``bugless_issue_changed``.

        A Model backend has to read the issue and the entry back after every
        write to report it, a second round of queries per write: with nobody
        listening, the Model does not ask for that at all.
        """
        return bool(self.manager.hook.bugless_issue_changed.get_hookimpls())

    def notify_issue_changed(
        self, issue: v1.Issue, entry: v1.HistoryEntry, backend_name: str
    ) -> None:
        """Fire ``bugless_issue_changed``; a failing extension is logged, never raised.

        The change is already committed when this runs, so an exception here
        must not turn into an error for the caller who made it.
        """
        try:
            self.manager.hook.bugless_issue_changed(
                issue=issue, entry=entry, backend_name=backend_name
            )
        except Exception:
            _log.exception(
                "a bugless_issue_changed hook failed",
                extra={"issue_id": issue.id, "version": entry.version},
            )


def _entry_points() -> list[EntryPoint]:
    """Entry points of the group, with the same plugin seen twice counted once.

    A distribution can be visible twice on sys.path (an editable install next
    to a regular one); that is the same plugin, not a conflict. They are
    found by :func:`bugless_core._entry_points.group_entry_points`, which
    finds what ``importlib.metadata.entry_points`` would without its cost.
    """
    unique: dict[str, EntryPoint] = {}
    for ep in group_entry_points(ENTRY_POINT_GROUP):
        seen = unique.get(ep.name)
        if seen is not None and seen.value != ep.value:
            msg = (
                f"two installed packages both provide the bugless plugin {ep.name!r} "
                f"({seen.value} and {ep.value}); uninstall one of them"
            )
            raise PluginLoadError(msg)
        unique[ep.name] = ep
    return list(unique.values())


def load_plugins(
    *, entry_points: bool = True, extra: Iterable[ModuleType | object] = ()
) -> Plugins:
    """Build a fresh plugin manager and run the registration hooks.

    Args:
        entry_points: Load every plugin installed in the ``bugless`` group.
            Tests pass False and hand their plugins in ``extra``.
        extra: Plugin objects (modules or instances with hookimpls) to register
            in addition, after the built-in one.

    Raises:
        PluginLoadError: A plugin failed to import or two plugins share a name.
        DuplicateRegistrationError: Two plugins registered one backend name.
    """
    from bugless_core import builtin_plugin  # noqa: PLC0415 - avoid an import cycle

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager=manager)
    manager.register(builtin_plugin, name="bugless-core")
    plugins.loaded.append(_info("bugless-core", builtin_plugin))
    if entry_points:
        for ep in _entry_points():
            if manager.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as exc:
                msg = (
                    f"the bugless plugin {ep.name!r} from {_package_name(ep)} failed to load: {exc}"
                )
                raise PluginLoadError(msg) from exc
            manager.register(module, name=ep.name)
            plugins.loaded.append(_info(ep.name, module, ep))
    for obj in extra:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        manager.register(obj, name=name)
        plugins.loaded.append(_info(name, obj))
    manager.check_pending()
    manager.hook.bugless_register_model_backends(register=plugins.model_backends)
    manager.hook.bugless_register_authenticators(register=plugins.authenticators)
    manager.hook.bugless_register_notification_channels(register=plugins.notification_channels)
    manager.hook.bugless_register_blob_stores(register=plugins.blob_stores)
    manager.hook.bugless_register_importers(register=plugins.importers)
    return plugins


def _package_name(ep: EntryPoint) -> str:
    """The name of the package that declares ``ep``, as its metadata spells it."""
    import importlib.metadata  # noqa: PLC0415 - an error message only

    try:
        return importlib.metadata.distribution(ep.distribution).name
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ep.distribution or "unknown package"


def _info(name: str, module: Any, ep: EntryPoint | None = None) -> PluginInfo:
    module_name = cast("str", getattr(module, "__name__", type(module).__name__))
    return PluginInfo(name=name, module=module_name, _entry_point=ep)
