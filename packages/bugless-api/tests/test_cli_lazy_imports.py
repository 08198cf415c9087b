"""A ``bugless`` command imports its own code only, not every installed command's.

A bot's script runs ``bugless issue show`` many times; each run assembles the
whole command tree first. These tests run the real entry point in a fresh
interpreter (every bugless package installed, as in a test session) and read
``sys.modules`` after it: the services' code (asyncpg, Litestar and the web
tier, the API server's settings and the gRPC clients they pull in, the
Authenticator) must not be there.
"""

from __future__ import annotations

import importlib
import os
import time

import click
import pytest
from api_support import cli_json

from bugless_api.cli import COMMANDS
from bugless_api.cli.groups import GROUPS
from bugless_testing.import_boundary import loaded_among, modules_after_command

#: Modules no client command's help needs: each service's code and what it imports.
SERVICES = (
    "asyncpg",
    "litestar",
    "jinja2",
    "bugless_web.commands",
    "bugless_web.settings",
    "bugless_auth.commands",
    "bugless_auth.serve_commands",
    "bugless_auth.user_commands",
    "bugless_auth.user_command_store",
    "bugless_auth.store",
    "bugless_auth.store_database",
    "bugless_notify.cli",
    "bugless_dev.command",
    "bugless_import.command",
    "bugless_core.model.commands",
    "bugless_api.cli.serve",
    "bugless_api.settings",
    "bugless_api.server",
)


def test_root_help_imports_no_command_module() -> None:
    loaded, _, _ = modules_after_command("--help")
    assert loaded_among(loaded, SERVICES) == []
    commands = sorted(m for m in loaded if m.startswith("bugless_api.cli."))
    assert commands == ["bugless_api.cli.groups"]
    assert (
        loaded_among(loaded, ("bugless_api.client", "bugless_core.clients", "bugless_proto")) == []
    )
    assert loaded_among(loaded, ("google.protobuf",)) == []  # the errors' gRPC details
    assert loaded_among(loaded, ("importlib.metadata", "email")) == []  # plugins found without it


def test_completing_a_command_name_imports_no_command_module() -> None:
    completing = {"_BUGLESS_COMPLETE": "bash_complete", "COMP_WORDS": "bugless ", "COMP_CWORD": "1"}
    loaded, _, _ = modules_after_command(env={**os.environ, **completing})
    assert loaded_among(loaded, SERVICES) == []
    assert sorted(m for m in loaded if m.startswith("bugless_api.cli.")) == [
        "bugless_api.cli.groups"
    ]


def test_a_client_commands_help_imports_its_module_and_no_service() -> None:
    loaded, _, _ = modules_after_command("issue", "show", "--help")
    assert "bugless_api.cli.issues" in loaded
    assert loaded_among(loaded, SERVICES) == []
    others = ("hotlists", "components", "saved_searches", "webhooks", "login", "attachments")
    assert loaded_among(loaded, tuple(f"bugless_api.cli.{m}" for m in others)) == []
    assert loaded_among(loaded, ("cryptography.x509",)) == []


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_a_groups_help_imports_none_of_its_command_modules(group: click.Group) -> None:
    """``bugless issue --help`` lists the commands by their summaries, importing none."""
    loaded, _, _ = modules_after_command(group.name or "", "--help")
    commands = sorted(m for m in loaded if m.startswith("bugless_api.cli."))
    assert commands == ["bugless_api.cli.groups"]
    assert loaded_among(loaded, SERVICES) == []
    assert (
        loaded_among(loaded, ("bugless_api.client", "bugless_core.clients", "google.protobuf"))
        == []
    )


def test_a_services_help_imports_no_other_service() -> None:
    loaded, _, _ = modules_after_command("model", "serve", "--help")
    assert "bugless_core.model.commands" in loaded
    others = tuple(m for m in SERVICES if m != "bugless_core.model.commands")
    assert loaded_among(loaded, others) == []


#: What a service needs to run and its help does not: the event loop, the gRPC client
#: with the generated messages, metrics.
RUNTIME = (
    "asyncio",
    "bugless_core.eventloop",
    "bugless_core.clients",
    "grpclib.client",
    "bugless_proto",
    "google.protobuf",
    "prometheus_client",
)


@pytest.mark.parametrize("service", ["api", "web", "notify", "model"])
def test_a_services_help_imports_no_runtime(service: str) -> None:
    """``serve --help`` parses settings naming other services (``ServiceAddress``) only."""
    loaded, _, _ = modules_after_command(service, "serve", "--help")
    assert "bugless_core.service_address" in loaded
    assert loaded_among(loaded, RUNTIME) == []


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_the_models_help_imports_its_settings_not_the_backend_contract(command: str) -> None:
    """The storage settings come from ``bugless_core.model.settings``, without the contract.

    ``bugless_core.model.backend`` (the ABC, whose signatures need the
    generated messages) is for a serving Model and its backends.
    """
    loaded, shown, _ = modules_after_command("model", command, "--help")
    assert "--schema" in shown
    assert "bugless_core.model.settings" in loaded
    assert loaded_among(loaded, ("bugless_core.model.backend", *RUNTIME)) == []


def test_a_real_issue_show_imports_no_service(served_api: dict[str, str]) -> None:
    component = cli_json(served_api, "component", "create", f"Lazy-{os.getpid()}-{time.time_ns()}")
    created = cli_json(
        served_api, "issue", "create", "--title", "shown", "--component", str(component["id"])
    )
    loaded, _, _ = modules_after_command(
        "issue", "show", str(created["id"]), "--json", env=served_api
    )
    assert "bugless_api.client" in loaded
    assert loaded_among(loaded, SERVICES) == []
    assert loaded_among(loaded, ("bugless_core.search",)) == []  # only frontends resolve queries
    assert loaded_among(loaded, ("cryptography",)) == []  # a client verifies no assertion


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_command_of_a_group_is_named_by_reference(group: click.Group) -> None:
    """``COMMANDS`` names exactly the commands the modules add, each where it is.

    A command a module adds to a group but ``COMMANDS`` leaves out would be
    there or not depending on which other command imported its module first.
    """
    references = {name: ref for name, (ref, _) in COMMANDS[group.name or ""].items()}
    for reference in references.values():
        importlib.import_module(f"bugless_api.cli.{reference.partition(':')[0]}")
    assert sorted(group.commands) == sorted(references)
    for name, reference in references.items():
        module, _, attribute = reference.partition(":")
        command = getattr(importlib.import_module(f"bugless_api.cli.{module}"), attribute)
        assert group.commands[name] is command, name
