from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bugless_core.plugins import PluginLoadError, load_plugins
from bugless_core.registry import (
    BackendLoadError,
    DuplicateRegistrationError,
    ModelBackendRegistrar,
    UnknownBackendError,
)

PluginFactory = Callable[..., Path]

BACKEND_PLUGIN = """
from bugless_core import hookimpl
from bugless_core.model.backend import Capability, ModelBackend


class {cls}(ModelBackend):
    name = "{name}"
    capabilities = frozenset({{Capability.WATCH}})


@hookimpl
def bugless_register_model_backends(register):
    register({cls})
"""


def _plugin(name: str, cls: str = "FixtureBackend") -> str:
    return BACKEND_PLUGIN.format(name=name, cls=cls)


LAZY_PLUGIN = """
from bugless_core import hookimpl


@hookimpl
def bugless_register_model_backends(register):
    register("{name}", "{module}:FixtureBackend")


@hookimpl
def bugless_register_commands(cli):
    cli.add_lazy_command("fixture", "{module}:fixture_command")
"""

LAZY_BACKEND_MODULE = """
import click

from bugless_core.model.backend import ModelBackend


class FixtureBackend(ModelBackend):
    name = "{declared}"


@click.command("fixture")
def fixture_command():
    click.echo("fixture ran")
"""


def _lazy_plugin(installed_plugin: PluginFactory, name: str, declared: str | None = None) -> Path:
    site = installed_plugin(
        "bugless-fixture-lazy",
        "bugless_fixture_lazy",
        LAZY_PLUGIN.format(name=name, module="bugless_fixture_lazy_backend"),
    )
    (site / "bugless_fixture_lazy_backend.py").write_text(
        LAZY_BACKEND_MODULE.format(declared=declared or name)
    )
    return site


def test_entry_point_plugin_is_discovered_and_its_backend_registered(
    installed_plugin: PluginFactory,
) -> None:
    installed_plugin("bugless-fixture-one", "bugless_fixture_one", _plugin("fixture"))
    plugins = load_plugins()
    assert "fixture" in plugins.model_backends
    assert plugins.model_backends.get("fixture").__module__ == "bugless_fixture_one"
    loaded = {p.name: p for p in plugins.loaded}
    assert loaded["bugless-fixture-one"].distribution == "bugless-fixture-one"
    assert loaded["bugless-fixture-one"].version == "1.0"


def test_two_plugins_registering_one_backend_name_is_an_error_naming_both(
    installed_plugin: PluginFactory,
) -> None:
    installed_plugin("bugless-fixture-one", "bugless_fixture_one", _plugin("same", "One"))
    installed_plugin("bugless-fixture-two", "bugless_fixture_two", _plugin("same", "Two"))
    with pytest.raises(DuplicateRegistrationError) as info:
        load_plugins()
    message = str(info.value)
    assert "'same' is registered twice" in message
    assert "bugless_fixture_one.One" in message
    assert "bugless_fixture_two.Two" in message


def test_two_packages_claiming_one_plugin_name_is_an_error(
    installed_plugin: PluginFactory,
) -> None:
    installed_plugin("bugless-fixture-one", "bugless_fixture_one", _plugin("a"), "clash")
    installed_plugin("bugless-fixture-two", "bugless_fixture_two", _plugin("b"), "clash")
    with pytest.raises(PluginLoadError, match="both provide the bugless plugin 'clash'"):
        load_plugins()


def test_plugin_that_fails_to_import_is_named_in_the_error(
    installed_plugin: PluginFactory,
) -> None:
    installed_plugin("bugless-fixture-bad", "bugless_fixture_bad", "raise ImportError('boom')\n")
    with pytest.raises(PluginLoadError, match="'bugless-fixture-bad' from bugless-fixture-bad"):
        load_plugins()


def test_unknown_backend_name_lists_installed_ones_and_suggests(
    installed_plugin: PluginFactory,
) -> None:
    installed_plugin("bugless-fixture-one", "bugless_fixture_one", _plugin("fixture-store"))
    plugins = load_plugins()
    with pytest.raises(UnknownBackendError) as info:
        plugins.model_backends.get("fixture-stor")
    assert "unknown model backend 'fixture-stor'" in info.value.message
    assert "installed: " in info.value.message
    assert "fixture-store" in info.value.message
    assert "did you mean 'fixture-store'?" in info.value.message


def test_a_backend_registered_by_reference_is_imported_on_first_get(
    installed_plugin: PluginFactory,
) -> None:
    _lazy_plugin(installed_plugin, "lazy")
    sys.modules.pop("bugless_fixture_lazy_backend", None)
    plugins = load_plugins()
    assert "lazy" in plugins.model_backends
    assert "lazy" in plugins.model_backends.names()
    assert "bugless_fixture_lazy_backend" not in sys.modules
    backend = plugins.model_backends.get("lazy")
    assert backend.__module__ == "bugless_fixture_lazy_backend"
    assert backend.name == "lazy"
    sys.modules.pop("bugless_fixture_lazy_backend", None)


def test_a_reference_to_a_class_declaring_another_name_fails_naming_both(
    installed_plugin: PluginFactory,
) -> None:
    _lazy_plugin(installed_plugin, "lazy", declared="other")
    plugins = load_plugins()
    with pytest.raises(BackendLoadError) as info:
        plugins.model_backends.get("lazy")
    assert "bugless_fixture_lazy_backend:FixtureBackend" in str(info.value)
    assert "'other'" in str(info.value)
    sys.modules.pop("bugless_fixture_lazy_backend", None)


def test_a_reference_that_does_not_import_fails_naming_backend_and_package() -> None:
    from bugless_core import hookimpl

    class Plugin:
        @hookimpl
        def bugless_register_model_backends(self, register: ModelBackendRegistrar) -> None:
            register("missing", "bugless_no_such_module.backend:Backend")

    plugins = load_plugins(entry_points=False, extra=[Plugin()])
    with pytest.raises(BackendLoadError, match=r"model backend 'missing'.*failed to load"):
        plugins.model_backends.get("missing")


def test_a_reference_and_another_class_under_one_name_is_an_error_naming_both() -> None:
    from bugless_core import hookimpl
    from bugless_core.model.backend import ModelBackend

    class Taken(ModelBackend):
        name = "taken"

    class Plugin:
        @hookimpl
        def bugless_register_model_backends(self, register: ModelBackendRegistrar) -> None:
            register("taken", "bugless_elsewhere.backend:Backend")
            register(Taken)

    with pytest.raises(DuplicateRegistrationError) as info:
        load_plugins(entry_points=False, extra=[Plugin()])
    assert "bugless_elsewhere.backend.Backend" in str(info.value)
    assert "Taken" in str(info.value)


def test_a_lazy_command_is_imported_only_when_run(installed_plugin: PluginFactory) -> None:
    site = _lazy_plugin(installed_plugin, "lazy")
    script = (
        "import sys; from bugless_core.cli import build_cli; "
        "from bugless_core.plugins import load_plugins; build_cli(load_plugins()); "
        "print('bugless_fixture_lazy_backend' in sys.modules)"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    assembled = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert assembled.stdout.strip() == "False"
    ran = _run_cli("fixture", extra_path=site)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "fixture ran\n"
    listed = _run_cli("--help", extra_path=site)
    assert "fixture" in listed.stdout


def test_fresh_managers_share_no_state() -> None:
    first = load_plugins(entry_points=False)
    second = load_plugins(entry_points=False)
    assert first.manager is not second.manager
    assert first.model_backends is not second.model_backends


def test_extra_plugins_register_without_entry_points() -> None:
    from bugless_core import hookimpl
    from bugless_core.model.backend import ModelBackend

    class Local(ModelBackend):  # registration only needs the class
        name = "local-test"

    class Plugin:
        @hookimpl
        def bugless_register_model_backends(self, register: ModelBackendRegistrar) -> None:
            register(Local)  # an abstract class registers too

    plugins = load_plugins(entry_points=False, extra=[Plugin()])
    assert plugins.model_backends.get("local-test") is Local


def test_failing_event_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from bugless_core import hookimpl
    from bugless_proto import v1

    class Exploding:
        @hookimpl
        def bugless_issue_changed(
            self, issue: v1.Issue, entry: v1.HistoryEntry, backend_name: str
        ) -> None:
            raise RuntimeError("webhook down")

    plugins = load_plugins(entry_points=False, extra=[Exploding()])
    plugins.notify_issue_changed(v1.Issue(id=1), v1.HistoryEntry(version=1), "x")
    assert "bugless_issue_changed hook failed" in caplog.text


def _run_cli(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", "from bugless_core.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_cli_plugins_lists_an_entry_point_plugin(installed_plugin: PluginFactory) -> None:
    site = installed_plugin("bugless-fixture-cli", "bugless_fixture_cli", _plugin("clitest"))
    result = _run_cli("plugins", "--json", extra_path=site)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model_backends"]["clitest"]["capabilities"] == ["watch"]
    assert any(p["distribution"] == "bugless-fixture-cli" for p in data["plugins"])
    human = _run_cli("plugins", extra_path=site)
    assert "clitest" in human.stdout


#: Loads the plugins, then asks each for its package, counting the package
#: metadata files (``METADATA``) opened in each step (the ``open`` audit event).
#: What the fixture plugin imports is imported first: a library reading its
#: own version on import (betterproto2 does) is not plugin discovery.
_METADATA_READS = """
import json, sys
from pathlib import Path
import bugless_core.model.backend
opened = []
def record(event, args):
    if event == "open" and isinstance(args[0], (str, Path)) and Path(args[0]).name == "METADATA":
        opened.append(str(args[0]))
sys.addaudithook(record)
from bugless_core.plugins import load_plugins
plugins = load_plugins()
at_load = len(opened)
found = {p.name: [p.distribution, p.version] for p in plugins.loaded}
print(json.dumps({"at_load": at_load, "when_asked": len(opened) - at_load, "found": found}))
"""


def test_loading_plugins_reads_no_package_metadata_until_asked(
    installed_plugin: PluginFactory,
) -> None:
    """A service loads its plugins at start; which package provides each is for ``bugless plugins``.

    Finding the package of a plugin loaded without an entry point (the
    built-in one) read every installed package's metadata (~0.4 s with ~170
    installed), and each plugin's name and version parsed its own: at every
    start, for a listing nobody had asked for.
    """
    site = installed_plugin("bugless-fixture-lazy-info", "bugless_fixture_lazy_info", _plugin("x"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _METADATA_READS],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    reads = json.loads(result.stdout)
    assert reads["at_load"] == 0
    assert reads["when_asked"] > 0
    assert reads["found"]["bugless-fixture-lazy-info"] == ["bugless-fixture-lazy-info", "1.0"]


def test_a_plugin_registered_without_an_entry_point_is_listed_with_its_package(
    installed_plugin: PluginFactory,
) -> None:
    """Found by its top-level module among the installed packages, as before; ``-`` if none."""
    installed_plugin("bugless-fixture-extra", "bugless_fixture_extra", _plugin("extra"), "other")
    import bugless_fixture_extra  # type: ignore[import-not-found]

    class NotInstalled:
        pass

    plugins = load_plugins(entry_points=False, extra=[bugless_fixture_extra, NotInstalled()])
    listed = {p.name: (p.module, p.distribution, p.version) for p in plugins.loaded}
    assert listed["bugless_fixture_extra"] == (
        "bugless_fixture_extra",
        "bugless-fixture-extra",
        "1.0",
    )
    assert listed["NotInstalled"] == ("NotInstalled", "-", "-")


def test_cli_duplicate_backend_is_a_clean_usage_error(installed_plugin: PluginFactory) -> None:
    one = installed_plugin("bugless-fixture-one", "bugless_fixture_one", _plugin("dup", "One"))
    two = installed_plugin("bugless-fixture-two", "bugless_fixture_two", _plugin("dup", "Two"))
    result = _run_cli("plugins", extra_path=Path(f"{one}{os.pathsep}{two}"))
    assert result.returncode == 2
    assert "error: model backend 'dup' is registered twice" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_version_lists_installed_bugless_packages() -> None:
    result = _run_cli("--version")
    assert result.returncode == 0
    assert "bugless-core 0.1.0" in result.stdout
    assert "bugless-proto 0.1.0" in result.stdout


def test_cli_help_lists_core_commands() -> None:
    result = _run_cli("--help")
    assert result.returncode == 0
    for command in ("plugins", "query", "model"):
        assert command in result.stdout
