"""Hook implementations of bugless-auth (the ``bugless`` entry point names this module).

Registration only: references to the backends' classes and the ``bugless
auth`` commands. The LDAP and OIDC backends import their optional libraries
(``bonsai``, ``authlib``) only when opened, so registering them costs nothing
on an install without the extras.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup
    from bugless_core.registry import AuthenticatorRegistrar

#: The backends, by name: ``module:Class``, imported when a deployment names one.
BACKENDS = {
    "local": "bugless_auth.local:LocalAuthenticator",
    "tls": "bugless_auth.tls:TlsAuthenticator",
    "ldap": "bugless_auth.ldap:LdapAuthenticator",
    "oidc": "bugless_auth.oidc:OpenIdConnectAuthenticator",
}


@hookimpl
def bugless_register_authenticators(register: AuthenticatorRegistrar) -> None:
    """Register local and tls, and ldap and oidc where their modules are present.

    By reference: the web tier and the API load this plugin too and must not
    import password hashing or the database driver for it.
    """
    for name, reference in BACKENDS.items():
        if importlib.util.find_spec(reference.partition(":")[0]) is not None:
            register(name, reference)


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless auth``."""
    cli.add_lazy_command(
        "auth",
        "bugless_auth.commands:auth_group",
        "Run the Authenticator service and manage its local users.",
    )
