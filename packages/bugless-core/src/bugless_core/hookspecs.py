"""The hooks a bugless plugin may implement.

A plugin is a module named by an entry point in the ``bugless`` group; it
implements some of these hooks with ``@bugless_core.hookimpl``. pluggy calls are
synchronous: registration hooks hand the plugin a typed registrar to call, and
event hooks notify extensions after the fact. The async data path never goes
through pluggy; it is the backend ABCs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup
    from bugless_core.registry import (
        AuthenticatorRegistrar,
        BlobStoreRegistrar,
        ImporterRegistrar,
        ModelBackendRegistrar,
        NotificationChannelRegistrar,
    )
    from bugless_proto import v1

PROJECT_NAME = "bugless"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def bugless_register_model_backends(register: ModelBackendRegistrar) -> None:
    """Register Model backend classes.

    Called once when a plugin manager is built, before any backend is chosen.
    Call ``register(BackendClass)`` for each backend; the class's ``name``
    attribute is what a deployment passes to ``--model``. Registering a name
    another plugin already registered is an error naming both plugins. Do not
    connect to anything here: this hook runs for ``bugless --help`` too.
    """


@hookspec
def bugless_register_authenticators(register: AuthenticatorRegistrar) -> None:
    """Register Authenticator backend classes.

    Same contract as :func:`bugless_register_model_backends`, for the names a
    deployment passes to ``--authenticator``.
    """


@hookspec
def bugless_register_blob_stores(register: BlobStoreRegistrar) -> None:
    """Register blob store classes (:class:`bugless_core.blobs.BlobStore`).

    Same contract as :func:`bugless_register_model_backends`, for the names a
    deployment sets in ``BUGLESS_BLOB_STORE`` (attachment content). Do not
    connect to anything here.
    """


@hookspec
def bugless_register_importers(register: ImporterRegistrar) -> None:
    """Register importer classes (:class:`bugless_core.importer.Importer`).

    Same contract as :func:`bugless_register_model_backends`, for the source
    names ``bugless import <source>`` accepts (``trac``, ``github``, ...).
    Do not read the source here: the command builds the importer it runs.
    """


@hookspec
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add click commands or groups to the ``bugless`` command.

    Called once while the CLI is assembled, in every bugless process (a
    service is started as ``bugless <service> serve``, and a script may run
    ``bugless issue show`` hundreds of times). Prefer
    ``cli.add_lazy_command(name, "module:group", summary)``: the module is
    imported only when that command runs or shows its own help, so ``bugless
    web serve`` does not import the Authenticator's command module and what
    it imports, and ``bugless --help`` lists the command by ``summary`` (the
    first sentence of its docstring, as ``--help`` would show it; without
    one, listing imports the module). ``cli.add_command`` adds a command
    object at once; a group another plugin added (``bugless issue``) can be
    extended by looking it up with ``cli.get_command(ctx, name)``.
    """


@hookspec
def bugless_issue_changed(issue: v1.Issue, entry: v1.HistoryEntry, backend_name: str) -> None:
    """Notify that an issue was created or changed.

    Called by the Model service after the change is committed (never before,
    and never for a change that was rolled back or retried), once per history
    entry, including the entries written on the other side of a relation.
    Implementations must be quick and must not raise: queue slow work
    (webhooks, mail) elsewhere. Exceptions are logged and swallowed so that an
    extension can never fail a write that already happened.
    """


@hookspec
def bugless_register_notification_channels(register: NotificationChannelRegistrar) -> None:
    """Register notification channel classes (``email``, ``webhook``, ...).

    Same contract as :func:`bugless_register_model_backends`: call
    ``register(ChannelClass)`` with a
    :class:`~bugless_core.notification_channel.NotificationChannel` subclass;
    its ``name`` is what a delivery names as its channel. Do not connect to
    anything here: the notifier opens the channels it is configured with.
    """
