"""Hook implementations of bugless-auth (the ``bugless`` entry point names this module).

Registration only: the backends' classes and the ``bugless auth`` commands.
The LDAP and OIDC backends import their optional libraries (``bonsai``,
``authlib``) only when opened, so registering them costs nothing on an install
without the extras.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect

import click

from bugless_core.auth_backend import AuthenticatorBackend
from bugless_core.hookspecs import hookimpl
from bugless_core.registry import AuthenticatorRegistrar

#: Backend modules registered when present, by the concrete backend classes they define.
_BACKEND_MODULES = (
    "bugless_auth.local",
    "bugless_auth.tls",
    "bugless_auth.ldap",
    "bugless_auth.oidc",
)


def backends_defined_in(module_name: str) -> list[type[AuthenticatorBackend]]:
    """Concrete backend classes defined (not merely imported) in ``module_name``."""
    if importlib.util.find_spec(module_name) is None:
        return []
    module = importlib.import_module(module_name)
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, AuthenticatorBackend)
        and cls.__module__ == module_name
        and not inspect.isabstract(cls)
    ]


@hookimpl
def bugless_register_authenticators(register: AuthenticatorRegistrar) -> None:
    """Register local and tls, and ldap and oidc where their modules are present."""
    for module_name in _BACKEND_MODULES:
        for cls in backends_defined_in(module_name):
            register(cls)


@hookimpl
def bugless_register_commands(cli: click.Group) -> None:
    """Add ``bugless auth``."""
    from bugless_auth.commands import auth_group  # noqa: PLC0415

    cli.add_command(auth_group)
