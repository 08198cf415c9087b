"""Every ``BUGLESS_*`` variable the chart renders is one the receiving command reads.

A variable no code reads is a setting that silently does nothing: the chart
once set ``BUGLESS_COCKROACH_SURVIVAL_GOAL=region`` while the migration applied
zone survival. The variables a command reads are generated from the typed
settings (``bugless_core.settings``): each command's options carry their
``envvar`` (current and deprecated names), built from the settings classes by
``settings_command``. A few families are read at run time rather than by
options, and are generated from their own declarations here: an enabled
Authenticator backend's ``BUGLESS_AUTH_<NAME>_<KEY>`` (the fields of its
settings class) and the Model's blob store (``BUGLESS_BLOB_STORE`` and the
chosen store's settings class).

Each container is checked against *its* command (its ``args``), so a
variable given to the wrong service fails too, for every shipped values file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click
import helm_python
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
import pytest
import yaml
from chart_rendering import (
    CHART,
    Manifest,
    env_of,
    load_values,
    pod_templates,
    render,
    render_notes,
)

from bugless_auth.ldap import LdapSettings
from bugless_auth.oidc import OidcSettings
from bugless_auth.settings import PeopleCaSettings
from bugless_auth.tls import TlsAuthenticator
from bugless_core.blobs import STORE_ENV
from bugless_core.cli import build_cli
from bugless_core.model.settings import ModelSettings
from bugless_core.networks import parse_networks
from bugless_core.plugins import load_plugins
from bugless_core.settings import declared_env_vars, settings_from_environ
from bugless_web._setting_values import checked_api_address, imported_source_urls

#: Authenticator backends whose options the chart may render, by name.
AUTH_BACKEND_SETTINGS: dict[str, type[Any]] = {"ldap": LdapSettings, "oidc": OidcSettings}


def _command(cli: click.Group, args: list[str]) -> click.Command:
    command: click.Command = cli
    context = click.Context(cli)
    for name in args:
        assert isinstance(command, click.Group), f"{args}: {name} is not a subcommand"
        # get_command, not .commands: plugins register their commands lazily.
        found = command.get_command(context, name)
        assert found is not None, f"{args}: the image's bugless has no command {name!r}"
        command = found
    return command


def _option_variables(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


def _runtime_variables(args: list[str]) -> set[str]:
    """Families read at run time, generated from their settings classes."""
    names: set[str] = set()
    if args == ["auth", "serve"]:
        for backend, settings in AUTH_BACKEND_SETTINGS.items():
            prefix = f"BUGLESS_AUTH_{backend.upper()}_"
            names |= {prefix + f.name.upper() for f in dataclasses.fields(settings)}
        # The tls backend has no settings class: its files are the options it
        # declares for the start-up check (the chart renders only these).
        names |= {f"BUGLESS_AUTH_TLS_{key.upper()}" for key in TlsAuthenticator.file_options}
    if args[0] == "model":
        plugins = load_plugins()
        names.add(STORE_ENV)
        for name in plugins.blob_stores.names():
            store = plugins.blob_stores.get(name)
            names |= declared_env_vars(store.settings_type, env_prefix="")
    return names


def read_variables(args: list[str]) -> set[str]:
    """Every ``BUGLESS_*`` variable ``bugless <args>`` reads."""
    cli = build_cli(load_plugins())
    return _option_variables(_command(cli, args)) | _runtime_variables(args)


def unread_variables(manifests: list[Manifest]) -> dict[str, set[str]]:
    """Per workload container, the rendered ``BUGLESS_*`` variables its command does not read."""
    unread: dict[str, set[str]] = {}
    for workload, pod in pod_templates(manifests):
        for container in pod["spec"]["containers"]:
            args = [str(a) for a in container.get("args", [])]
            rendered = {n for n in env_of(container) if n.startswith("BUGLESS_")}
            missing = rendered - read_variables(args)
            if missing:
                unread[f"{workload['metadata']['name']}/{container['name']} {args}"] = missing
    return unread


def test_every_rendered_variable_is_declared_by_the_command_receiving_it(
    manifests: list[Manifest],
) -> None:
    assert unread_variables(manifests) == {}


@pytest.mark.parametrize(
    "values",
    [
        {
            "database": {"backend": "cockroach"},
            "cockroach": {"regions": ["a1", "b1", "c1"], "survivalGoal": "region"},
        },
        {"database": {"backend": "cockroach"}, "cockroach": {"locality": "region=a1,zone=a1-b"}},
    ],
)
def test_the_cockroach_settings_reach_a_command_that_reads_them(values: dict[str, Any]) -> None:
    """The two variables nothing used to read, in the workloads that get them."""
    manifests = render(values)
    assert unread_variables(manifests) == {}
    rendered = {
        name
        for _, pod in pod_templates(manifests)
        for container in pod["spec"]["containers"]
        for name in env_of(container)
    }
    assert {"BUGLESS_COCKROACH_SURVIVAL_GOAL", "BUGLESS_AUTH_DATABASE_DIALECT"} <= rendered


def test_a_variable_nothing_reads_is_caught() -> None:
    """The check itself: a made-up variable on the Model fails it."""
    manifests = render({})
    for _, pod in pod_templates(manifests):
        for container in pod["spec"]["containers"]:
            if container.get("args") == ["model", "serve"]:
                container.setdefault("env", []).append({"name": "BUGLESS_NOT_A_SETTING"})
    assert {"BUGLESS_NOT_A_SETTING"} in unread_variables(manifests).values()


#: The chart's users' change feed values, by command: value name to the
#: settings field (the option) it is for.
FEED_VALUES: dict[tuple[str, ...], dict[str, str]] = {
    ("api", "serve"): {
        "userCacheSeconds": "user_cache_seconds",
        "userChangesSeconds": "user_changes_seconds",
    },
    ("web", "serve"): {
        "userCacheSeconds": "user_cache_seconds",
        "userChangesSeconds": "user_changes_seconds",
    },
    ("auth", "serve"): {
        "userChangesSeconds": "user_changes_seconds",
        "userChangesRetentionSeconds": "user_changes_retention_seconds",
    },
}


def _option(command: click.Command, field: str) -> click.Parameter:
    """The option of ``command`` that sets the settings field ``field`` (its current name)."""
    (found,) = [p for p in command.params if p.name is not None and p.name.split("__")[-1] == field]
    return found


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "api": {"userCacheSeconds": 31, "userChangesSeconds": 0.25},
            "web": {"userCacheSeconds": 32, "userChangesSeconds": 0},
            "auth": {"userChangesSeconds": 2.5, "userChangesRetentionSeconds": 7200},
        },
    ],
)
def test_the_user_cache_values_reach_the_options_that_read_them(values: dict[str, Any]) -> None:
    """Each value is in the variable its command's option reads, as the number given.

    With no values, the chart's defaults are the commands' own.
    """
    cli = build_cli(load_plugins())
    seen: set[tuple[str, ...]] = set()
    for _, pod in pod_templates(render(values)):
        for container in pod["spec"]["containers"]:
            args = tuple(str(a) for a in container.get("args", []))
            if args not in FEED_VALUES:
                continue
            seen.add(args)
            env = env_of(container)
            command = _command(cli, list(args))
            for key, field in FEED_VALUES[args].items():
                option = _option(command, field)
                (variable,) = [name for name in option.envvar or () if name in env]
                rendered = option.type.convert(env[variable]["value"], option, None)
                wanted = values.get(args[0], {}).get(key, option.default)
                assert rendered == wanted, (args, key, variable)
    assert seen == set(FEED_VALUES)


def _served_env_and_option(
    values: dict[str, Any], service: str, name: str
) -> tuple[dict[str, dict[str, Any]], click.Parameter]:
    """The chart's environment for ``bugless <service> serve``, and its option ``name``."""
    (container,) = [
        c
        for _, pod in pod_templates(render(values))
        for c in pod["spec"]["containers"]
        if [str(a) for a in c.get("args", [])][:2] == [service, "serve"]
    ]
    option = _option(_command(build_cli(load_plugins()), [service, "serve"]), name)
    return env_of(container), option


@pytest.mark.parametrize(
    ("networks", "parsed"),
    [([], ()), (["10.20.30.0/24", "fd00:1::/64"], ("10.20.30.0/24", "fd00:1::/64"))],
)
def test_the_webhook_allowed_networks_reach_the_notifiers_option(
    networks: list[str], parsed: tuple[str, ...]
) -> None:
    """``notify.webhookAllowedNetworks`` is what the notifier's option reads; none by default.

    Unset, the variable is not rendered at all: component webhooks reach
    public addresses only (bugless_notify.addresses).
    """
    values = {"notify": {"webhookAllowedNetworks": networks}} if networks else {}
    env, option = _served_env_and_option(values, "notify", "webhook_allowed_networks")
    variable = "BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS"
    assert variable in (option.envvar or ())
    if not networks:
        assert variable not in env
        assert not option.default
        return
    value = env[variable]["value"]
    assert value == "10.20.30.0/24 fd00:1::/64"
    # Split as click splits the variable, then read as the notifier reads it.
    raw = option.type.split_envvar_value(value)
    assert tuple(str(n) for n in parse_networks(raw)) == parsed


def test_the_webhook_proxy_reaches_the_notifiers_option_only_when_set() -> None:
    """``notify.webhookProxy``: the notifier's ``--webhook-proxy``; not rendered when empty."""
    cli = build_cli(load_plugins())
    option = _option(_command(cli, ["notify", "serve"]), "webhook_proxy")
    variable = "BUGLESS_NOTIFY_WEBHOOK_PROXY"
    assert variable in (option.envvar or ())
    for proxy in ("", "http://proxy.internal:3128"):
        values = {"notify": {"webhookProxy": proxy}}
        (container,) = [
            c
            for _, pod in pod_templates(render(values))
            for c in pod["spec"]["containers"]
            if [str(a) for a in c.get("args", [])][:2] == ["notify", "serve"]
        ]
        env = env_of(container)
        if proxy:
            assert env[variable]["value"] == proxy
        else:
            assert variable not in env


@pytest.mark.parametrize(
    ("proxies", "parsed"),
    [
        ([], ()),
        (
            ["10.244.0.0/16", "fd00:10:244::/56", "192.0.2.7"],
            ("10.244.0.0/16", "fd00:10:244::/56", "192.0.2.7/32"),
        ),
    ],
)
def test_the_trusted_proxies_reach_the_web_tiers_option(
    proxies: list[str], parsed: tuple[str, ...]
) -> None:
    """``web.trustedProxies`` is what ``bugless web serve --trusted-proxy`` reads; none by default.

    Unset, the variable is not rendered at all: the web pods believe no
    ``X-Forwarded-For`` (bugless_web.settings), and the install notes say so.
    """
    values = {"web": {"trustedProxies": proxies}} if proxies else {}
    env, option = _served_env_and_option(values, "web", "trusted_proxies")
    variable = "BUGLESS_WEB_TRUSTED_PROXIES"
    assert variable in (option.envvar or ())
    warning = "WARNING: web.trustedProxies is empty"
    if not proxies:
        assert variable not in env
        assert not option.default
        assert warning in render_notes(values)
        return
    value = env[variable]["value"]
    assert value == "10.244.0.0/16, fd00:10:244::/56, 192.0.2.7"
    # Split as click splits the variable, then read as the web tier reads it.
    raw = option.type.split_envvar_value(value)
    assert tuple(str(n) for n in parse_networks(raw, strict=True)) == parsed
    assert warning not in render_notes(values)


@pytest.mark.parametrize(
    "sources", [[], ["https://trac.example.org/", "https://Roundup.example.org/tracker"]]
)
def test_the_imported_sources_reach_the_web_tiers_option(sources: list[str]) -> None:
    """``web.importedSources`` is what ``bugless web serve --imported-source`` reads."""
    values = {"web": {"importedSources": sources}} if sources else {}
    env, option = _served_env_and_option(values, "web", "imported_sources")
    variable = "BUGLESS_WEB_IMPORTED_SOURCES"
    assert variable in (option.envvar or ())
    if not sources:
        assert variable not in env
        return
    raw = option.type.split_envvar_value(env[variable]["value"])
    assert imported_source_urls(raw) == (
        "https://trac.example.org/",
        "https://roundup.example.org/tracker/",
    )


@pytest.mark.parametrize("given", [False, True])
def test_the_apis_public_address_and_ca_hint_reach_the_web_tiers_options(given: bool) -> None:
    """``web.apiPublicAddress``/``apiCaHint`` are what the API access page's command shows.

    Unset, neither variable is rendered: the page shows placeholders.
    """
    address, ca = "api.bugless.example.com:443", "~/bugless-api-ca.pem"
    values = {"web": {"apiPublicAddress": address, "apiCaHint": ca}} if given else {}
    cli = build_cli(load_plugins())
    (container,) = [
        c
        for _, pod in pod_templates(render(values))
        for c in pod["spec"]["containers"]
        if [str(a) for a in c.get("args", [])][:2] == ["web", "serve"]
    ]
    env = env_of(container)
    serve = _command(cli, ["web", "serve"])
    variables = {
        "api_public_address": "BUGLESS_WEB_API_PUBLIC_ADDRESS",
        "api_ca_hint": "BUGLESS_WEB_API_CA_HINT",
    }
    for name, variable in variables.items():
        assert variable in (_option(serve, name).envvar or ())
        assert (variable in env) == given
    if given:
        assert checked_api_address(env[variables["api_public_address"]]["value"]) == address
        assert env[variables["api_ca_hint"]]["value"] == ca


def test_the_production_example_trusts_its_ingress_controllers_pods() -> None:
    """The worked production values name the ingress pods' CIDRs, so its notes warn of nothing."""
    values = load_values("values-production.yaml")
    assert values["web"]["trustedProxies"]
    assert "web.trustedProxies" not in render_notes(values)


def _auth_workload(values: dict[str, Any]) -> Manifest:
    """The workload running ``bugless auth serve``."""
    (workload,) = [
        workload
        for workload, pod in pod_templates(render(values))
        for c in pod["spec"]["containers"]
        if [str(a) for a in c.get("args", [])][:2] == ["auth", "serve"]
    ]
    return workload


def test_earlier_people_cas_reach_the_authenticators_option_without_their_keys() -> None:
    """``auth.peopleCa.previousSecretNames``: ``--people-ca-previous-cert``, one per Secret.

    Each earlier CA's Secret is mounted with its certificate alone (its key
    signs nothing any more, so no pod holds it); unset, nothing is rendered.
    """
    variable = "BUGLESS_AUTH_PEOPLE_CA_PREVIOUS_CERTS"
    current = {"secretName": "people-ca-2026"}
    env, option = _served_env_and_option(
        {"auth": {"peopleCa": current}}, "auth", "previous_cert_files"
    )
    assert variable in (option.envvar or ())
    assert variable not in env
    assert not option.default

    secrets = ["people-ca-2025", "people-ca-2024"]
    values = {"auth": {"peopleCa": {**current, "previousSecretNames": secrets}}}
    env, option = _served_env_and_option(values, "auth", "previous_cert_files")
    # Split as click splits the variable (':' for paths).
    paths = option.type.split_envvar_value(env[variable]["value"])
    assert paths == [
        "/etc/bugless/people-ca-previous/0/tls.crt",
        "/etc/bugless/people-ca-previous/1/tls.crt",
    ]
    workload = _auth_workload(values)
    kubernetes_validate.validate(workload, "1.29.0", strict=True)  # Chart.yaml's kubeVersion
    pod = workload["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    for index, secret in enumerate(secrets):
        name = f"people-ca-previous-{index}"
        assert volumes[name]["secret"]["secretName"] == secret
        assert volumes[name]["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
        assert mounts[name]["readOnly"]
        assert f"{mounts[name]['mountPath']}/tls.crt" == paths[index]


def test_earlier_people_cas_without_a_current_one_fail_the_render() -> None:
    values = {"auth": {"peopleCa": {"previousSecretNames": ["people-ca-2025"]}}}
    with pytest.raises(helm_python.HelmError, match=r"needs auth\.peopleCa\.secretName"):
        render(values)


@pytest.mark.parametrize(
    ("people_ca", "issue_per_hour", "device_login_seconds"),
    [({}, 20, 600.0), ({"issuePerHour": 5, "deviceLoginSeconds": 90}, 5, 90.0)],
)
def test_the_people_cert_rate_and_device_login_wait_reach_the_authenticators_options(
    people_ca: dict[str, Any], issue_per_hour: int, device_login_seconds: float
) -> None:
    """``auth.peopleCa.issuePerHour``/``deviceLoginSeconds`` reach the two options the code reads.

    Rendered with the people CA (they mean nothing without it); the chart's
    defaults are the options' own, and a value given reaches the fields
    :mod:`bugless_auth.people` reads (``issue_per_hour``, ``device_login_seconds``).
    """
    values = {"auth": {"peopleCa": {"secretName": "people-ca-2026", **people_ca}}}
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())["auth"]["peopleCa"]
    read: dict[str, str] = {}
    for name, key, variable, wanted in [
        ("issue_per_hour", "issuePerHour", "BUGLESS_AUTH_PEOPLE_CERT_ISSUE_PER_HOUR",
         issue_per_hour),
        ("device_login_seconds", "deviceLoginSeconds", "BUGLESS_AUTH_DEVICE_LOGIN_SECONDS",
         device_login_seconds),
    ]:  # fmt: skip
        env, option = _served_env_and_option(values, "auth", name)
        assert variable in (option.envvar or ())
        assert option.type.convert(env[variable]["value"], option, None) == wanted
        assert chart_defaults[key] == option.default
        read[variable] = env[variable]["value"]
    settings = settings_from_environ(PeopleCaSettings, read, env_prefix="BUGLESS_AUTH_")
    assert settings.issue_per_hour == issue_per_hour
    assert settings.device_login_seconds == device_login_seconds


@pytest.mark.parametrize(
    ("database", "seconds"), [({}, 30.0), ({"statementTimeoutSeconds": 90}, 90.0)]
)
def test_the_statement_timeout_reaches_the_model_and_the_migration(
    database: dict[str, Any], seconds: float
) -> None:
    """``database.statementTimeoutSeconds`` bounds the Model's and the migration's statements.

    Both ``model serve`` and the migration Job's ``model migrate`` (whose
    batches after the files run under it) get the variable; each command's
    option reads it, the chart's default is the option's own, and the value
    builds the :class:`ModelSettings` whose ``statement_timeout_ms`` every
    connection of the backend is opened with.
    """
    chart_default = yaml.safe_load((CHART / "values.yaml").read_text())["database"]
    variable = "BUGLESS_STATEMENT_TIMEOUT_SECONDS"
    containers = {
        tuple(str(a) for a in c.get("args", [])): c
        for _, pod in pod_templates(render({"database": database}))
        for c in pod["spec"]["containers"]
    }
    for args in [("model", "serve"), ("model", "migrate")]:
        env = env_of(containers[args])
        command = _command(build_cli(load_plugins()), list(args))
        option = _option(command, "statement_timeout_seconds")
        assert variable in (option.envvar or ())
        assert chart_default["statementTimeoutSeconds"] == option.default
        assert option.type.convert(env[variable]["value"], option, None) == seconds
        read = {"BUGLESS_DATABASE_URL": "postgresql://db/bugless", variable: env[variable]["value"]}
        settings = settings_from_environ(ModelSettings, read)
        assert settings.statement_timeout_seconds == seconds
        assert settings.statement_timeout_ms == seconds * 1000


def _api_pod(values: dict[str, Any]) -> tuple[Manifest, dict[str, Any]]:
    """The workload running ``bugless api serve``, and its pod template."""
    ((workload, pod),) = [
        (workload, pod)
        for workload, pod in pod_templates(render(values))
        for c in pod["spec"]["containers"]
        if [str(a) for a in c.get("args", [])][:2] == ["api", "serve"]
    ]
    return workload, pod


def test_the_people_cas_reach_the_apis_handshake_without_a_bundle_edit_or_a_key() -> None:
    """``auth.peopleCa``'s current and earlier CAs are ``--people-ca-cert`` of the API.

    The API trusts a people CA's certificates only while the Authenticator
    lists the CA: the same values set both, so a rotation's steps edit no
    client CA bundle. Only each Secret's certificate is mounted in the API's
    pod, never the current CA's key; without a people CA nothing is rendered.
    """
    variable = "BUGLESS_API_PEOPLE_CA_CERTS"
    env, option = _served_env_and_option({}, "api", "people_ca_certs")
    assert variable in (option.envvar or ())
    assert variable not in env
    assert not option.default
    _, pod = _api_pod({})
    assert not [v for v in pod["spec"]["volumes"] if v["name"].startswith("people-ca")]

    secrets = ["people-ca-2025", "people-ca-2024"]
    values = {
        "auth": {"peopleCa": {"secretName": "people-ca-2026", "previousSecretNames": secrets}}
    }
    env, option = _served_env_and_option(values, "api", "people_ca_certs")
    paths = option.type.split_envvar_value(env[variable]["value"])
    assert paths == [
        "/etc/bugless/people-ca/tls.crt",
        "/etc/bugless/people-ca-previous/0/tls.crt",
        "/etc/bugless/people-ca-previous/1/tls.crt",
    ]
    workload, pod = _api_pod(values)
    kubernetes_validate.validate(workload, "1.29.0", strict=True)  # Chart.yaml's kubeVersion
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    for name, secret, path in zip(
        ["people-ca", "people-ca-previous-0", "people-ca-previous-1"],
        ["people-ca-2026", *secrets],
        paths,
        strict=True,
    ):
        assert volumes[name]["secret"]["secretName"] == secret
        assert volumes[name]["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
        assert mounts[name]["readOnly"]
        assert f"{mounts[name]['mountPath']}/tls.crt" == path
