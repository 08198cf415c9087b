"""What the values switch on, and the configurations the chart refuses."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
from chart_rendering import Manifest, env_of, of_kind, render, rendered

from bugless_auth.ldap import LdapSettings


def _deployment(manifests: list[Manifest], component: str) -> Manifest:
    (found,) = [
        d
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["name"].endswith(f"-{component}")
    ]
    return found


def _env(manifests: list[Manifest], component: str) -> dict[str, dict[str, Any]]:
    return env_of(_deployment(manifests, component)["spec"]["template"]["spec"]["containers"][0])


def _migration_job(manifests: list[Manifest]) -> Manifest:
    (job,) = of_kind(manifests, "Job")
    return job


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web": {"replicas": 1}}, "web.replicas must be 2 or more"),
        (
            {"model": {"autoscaling": {"enabled": True, "minReplicas": 1}}},
            "model.autoscaling.minReplicas must be 2 or more",
        ),
        (
            {"auth": {"terminationGracePeriodSeconds": 30}},
            "auth.terminationGracePeriodSeconds (30) must exceed",
        ),
        (
            {"web": {"terminationGracePeriodSeconds": 100}},
            "web.terminationGracePeriodSeconds (100) must exceed preStopSleepSeconds + "
            "drainSeconds + max(graceSeconds, drainTransferSeconds) (130)",
        ),
        ({"database": {"backend": "mysql"}}, "database.backend must be postgres or cockroach"),
        (
            {"internalTLS": {"enabled": False}},
            "enable both",
        ),
        (
            {
                "database": {"backend": "cockroach"},
                "cockroach": {"survivalGoal": "region", "regions": ["a", "b"]},
            },
            "needs 3 or more cockroach.regions",
        ),
        ({"auth": {"ldap": {"enabled": True, "baseDn": "dc=x"}}}, "auth.ldap.urls"),
        ({"api": {"tls": {"secretName": ""}}}, "api.tls.secretName"),
        ({"model": {"blobStore": {"type": "s3"}}}, "model.blobStore.s3.bucket"),
        (
            {"postgresql": {"cnpg": {"enabled": True, "backup": {"enabled": True}}}},
            "postgresql.cnpg.backup.destinationPath",
        ),
        ({"model": {"blobStore": {"type": "disk"}}}, '"disk" is neither database nor s3'),
    ],
)
def test_unsafe_or_incomplete_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(values)


def test_defaults_read_the_database_url_and_page_token_from_secrets() -> None:
    manifests = rendered("values.yaml")
    env = _env(manifests, "model")
    assert env["BUGLESS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "bugless-database",
        "key": "url",
    }
    assert (
        env["BUGLESS_PAGE_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"]["name"]
        == "bugless-page-token"
    )
    assert env["BUGLESS_MODEL"]["value"] == "postgres"
    assert env["BUGLESS_MIGRATE"]["value"] == "false"
    assert (
        _env(manifests, "web")["BUGLESS_WEB_SESSION_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
        == "bugless-session-keys"
    )


def test_migration_runs_before_install_and_upgrade_with_an_external_database() -> None:
    job = _migration_job(rendered("values.yaml"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["model", "migrate"]
    assert container["image"].startswith("ghcr.io/bugless/bugless-model:")


def test_a_staged_upgrade_migrates_with_the_model_image_and_orders_nothing_else() -> None:
    """docs/upgrades.md: each step of a staged upgrade sets one service's tag.

    The hook runs the Model's image, so a step that upgrades only the
    Authenticator migrates nothing new; the migration Job is the chart's only
    hook, so nothing else is ordered (every Deployment rolls as Helm applies it).
    """
    auth_first = render({"image": {"tag": "0.2.0"}, "auth": {"image": {"tag": "0.3.0"}}})
    model_next = render(
        {
            "image": {"tag": "0.2.0"},
            "auth": {"image": {"tag": "0.3.0"}},
            "model": {"image": {"tag": "0.3.0"}},
        }
    )
    for manifests, migrates_with in ((auth_first, "0.2.0"), (model_next, "0.3.0")):
        job = _migration_job(manifests)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"ghcr.io/bugless/bugless-model:{migrates_with}"
        model = _deployment(manifests, "model")["spec"]["template"]["spec"]["containers"][0]
        assert model["image"] == container["image"]
        auth = _deployment(manifests, "auth")["spec"]["template"]["spec"]["containers"][0]
        assert auth["image"] == "ghcr.io/bugless/bugless-auth:0.3.0"
        web = _deployment(manifests, "web")["spec"]["template"]["spec"]["containers"][0]
        assert web["image"] == "ghcr.io/bugless/bugless-web:0.2.0"
        hooks = [
            m["kind"]
            for m in manifests
            if "helm.sh/hook" in (m["metadata"].get("annotations") or {})
        ]
        assert hooks == ["Job"]


def test_cloudnativepg_cluster_provides_the_database_url() -> None:
    manifests = rendered("values-production.yaml")
    (cluster,) = of_kind(manifests, "Cluster")
    assert cluster["metadata"]["name"] == "bugless-db"
    assert cluster["spec"]["instances"] == 3
    for component in ("model", "auth"):
        ref = _env(manifests, component)["BUGLESS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "bugless-db-app", "key": "uri"}
    # The cluster is part of the release, so it cannot be migrated before install.
    assert (
        _migration_job(manifests)["metadata"]["annotations"]["helm.sh/hook"]
        == "post-install,pre-upgrade"
    )


def test_multiregion_migrates_with_the_regions_primary_first() -> None:
    manifests = rendered("values-multiregion.yaml")
    job_env = env_of(_migration_job(manifests)["spec"]["template"]["spec"]["containers"][0])
    assert job_env["BUGLESS_MODEL"]["value"] == "cockroach"
    assert job_env["BUGLESS_REGIONS"]["value"] == "us-east1,us-west1,europe-west1"
    assert job_env["BUGLESS_COCKROACH_SURVIVAL_GOAL"]["value"] == "region"
    model_env = _env(manifests, "model")
    assert model_env["BUGLESS_MODEL"]["value"] == "cockroach"
    assert model_env["BUGLESS_COCKROACH_LOCALITY"]["value"] == "region=us-east1"
    model_policy = [
        p for p in of_kind(manifests, "NetworkPolicy") if p["metadata"]["name"] == "bugless-model"
    ]
    ports = [port["port"] for rule in model_policy[0]["spec"]["egress"] for port in rule["ports"]]
    assert 26257 in ports


def test_internal_mtls_with_cert_manager_wires_every_component() -> None:
    manifests = rendered("values-production.yaml")
    certificates = {c["metadata"]["name"]: c for c in of_kind(manifests, "Certificate")}
    for component in ("model", "auth", "web", "api"):
        certificate = certificates[f"bugless-{component}-internal-tls"]
        secret = certificate["spec"]["secretName"]
        pod = _deployment(manifests, component)["spec"]["template"]["spec"]
        assert {
            "name": "internal-tls",
            "secret": {"secretName": secret, "defaultMode": 0o440},
        } in pod["volumes"]
    for component in ("model", "auth"):
        env = _env(manifests, component)
        assert (
            env[f"BUGLESS_{component.upper()}_CLIENT_CA"]["value"]
            == "/etc/bugless/internal-tls/ca.crt"
        )
        assert "server auth" in certificates[f"bugless-{component}-internal-tls"]["spec"]["usages"]
        readiness = _deployment(manifests, component)["spec"]["template"]["spec"]["containers"][0][
            "readinessProbe"
        ]
        assert "--cert=/etc/bugless/internal-tls/tls.crt" in readiness["exec"]["command"]
    for component in ("web", "api"):
        env = _env(manifests, component)
        assert (
            env[f"BUGLESS_{component.upper()}_MODEL"]["value"] == "bugless-model.bugless.svc:50051"
        )
        # web calls its client files --tls-*, api --service-* (its --tls-* are for bots).
        cert = "BUGLESS_WEB_TLS_CERT" if component == "web" else "BUGLESS_API_SERVICE_CERT"
        assert env[cert]["value"] == "/etc/bugless/internal-tls/tls.crt"
    assert {i["metadata"]["name"] for i in of_kind(manifests, "Issuer")} == {
        "bugless-selfsigned",
        "bugless-internal-ca",
    }


def _ldap_settings(env: dict[str, dict[str, Any]]) -> LdapSettings:
    """The LdapSettings the Authenticator builds from the rendered BUGLESS_AUTH_LDAP_* values."""
    prefix = "BUGLESS_AUTH_LDAP_"
    config = {
        name.removeprefix(prefix).lower(): variable.get("value", "secret")
        for name, variable in env.items()
        if name.startswith(prefix)
    }
    return LdapSettings.from_mapping(config)


def test_the_group_count_settings_reach_the_ldap_backend() -> None:
    """The access-list form's LDAP group counts: cache time, member attribute, group base.

    Read by the backend (LdapSettings.from_mapping of what the chart renders),
    so none of them is a value nothing reads.
    """
    searched = _ldap_settings(_env(rendered("values-production.yaml"), "auth"))
    assert searched.group_search_base == "ou=groups,dc=example,dc=com"
    assert searched.group_member_attribute == "member"
    assert searched.group_count_seconds == 60.0
    assert searched.group_entry_base == ""
    assert searched.group_entry_filter == ""
    production = _env(rendered("values-production.yaml"), "auth")
    assert "BUGLESS_AUTH_LDAP_GROUP_ENTRY_FILTER" not in production

    ldap = {
        "enabled": True,
        "urls": ["ldaps://ldap.example.com"],
        "baseDn": "ou=people,dc=example,dc=com",
        "groupEntryBaseDn": "ou=groups,dc=example,dc=com",
        "groupMemberAttribute": "uniqueMember",
        "groupCountSeconds": 15,
        "groupEntryFilter": "(objectClass=group)",
    }
    member_of = render({"auth": {"backends": ["ldap"], "ldap": ldap}})
    settings = _ldap_settings(_env(member_of, "auth"))
    assert settings.group_search_base == ""
    assert settings.group_entry_base == "ou=groups,dc=example,dc=com"
    assert settings.group_count_seconds == 15.0
    assert settings.group_entry_filter == "(objectClass=group)"
    # In group-search mode too: a posixGroup and a groupOfNames of one name.
    posix = {**ldap, "groupBaseDn": "ou=groups,dc=example,dc=com"}
    posix["groupEntryFilter"] = "(objectClass=posixGroup)"
    searched = _ldap_settings(_env(render({"auth": {"backends": ["ldap"], "ldap": posix}}), "auth"))
    assert searched.group_entry_filter == "(objectClass=posixGroup)"
    # memberOf mode reads no member attribute: the chart does not set one.
    assert "BUGLESS_AUTH_LDAP_GROUP_MEMBER_ATTRIBUTE" not in _env(member_of, "auth")


def test_the_ldap_pool_size_and_operation_timeout_reach_the_ldap_backend() -> None:
    """auth.ldap.poolSize and operationTimeoutSeconds, read by the backend as the chart gives them.

    Group counts take up to half the pool, so a deployment sizes it from the
    chart, not only from an extraEnv variable; the defaults are the code's.
    """
    defaults = _ldap_settings(_env(rendered("values-production.yaml"), "auth"))
    assert (defaults.pool_size, defaults.operation_timeout) == (4, 5.0)
    assert (defaults.pool_size, defaults.operation_timeout) == (
        LdapSettings.pool_size,
        LdapSettings.operation_timeout,
    )

    ldap = {
        "enabled": True,
        "urls": ["ldaps://ldap.example.com"],
        "baseDn": "ou=people,dc=example,dc=com",
        "poolSize": 12,
        "operationTimeoutSeconds": 2.5,
    }
    env = _env(render({"auth": {"backends": ["ldap"], "ldap": ldap}}), "auth")
    assert env["BUGLESS_AUTH_LDAP_POOL_SIZE"]["value"] == "12"
    assert env["BUGLESS_AUTH_LDAP_OPERATION_TIMEOUT"]["value"] == "2.5"
    settings = _ldap_settings(env)
    assert (settings.pool_size, settings.operation_timeout) == (12, 2.5)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("poolSize", 0, 'auth.ldap.poolSize: "0" is not a whole number of connections'),
        ("poolSize", -2, 'auth.ldap.poolSize: "-2" is not a whole number'),
        ("poolSize", 2.5, 'auth.ldap.poolSize: "2.5" is not a whole number'),
        ("poolSize", "four", 'auth.ldap.poolSize: "four" is not a whole number'),
        ("operationTimeoutSeconds", 0, 'auth.ldap.operationTimeoutSeconds: "0" is not a positive'),
        ("operationTimeoutSeconds", -1.5, 'operationTimeoutSeconds: "-1.5" is not a positive'),
        ("operationTimeoutSeconds", "5s", 'operationTimeoutSeconds: "5s" is not a positive'),
        ("operationTimeoutSeconds", "", 'operationTimeoutSeconds: "" is not a positive'),
    ],
)
def test_a_bad_ldap_pool_size_or_operation_timeout_is_refused_at_render(
    setting: str, value: object, message: str
) -> None:
    """The Authenticator refuses these when its pod starts; the chart refuses them first.

    Without the check a pool of 0 or a timeout of "5s" rendered, and the
    rollout's new pods failed at start (CrashLoopBackOff) with the old ones
    still serving: the mistake was found in the cluster, not by ``helm``.
    """
    ldap = {"enabled": True, "urls": ["ldaps://ldap.example.com"], "baseDn": "dc=example"}
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render({"auth": {"backends": ["ldap"], "ldap": {**ldap, setting: value}}})


def test_ldap_pool_size_and_operation_timeout_given_as_strings_still_render() -> None:
    """A value quoted in a values file ("8", "0.5") is what the backend reads, so it is taken."""
    ldap = {
        "enabled": True,
        "urls": ["ldaps://ldap.example.com"],
        "baseDn": "ou=people,dc=example,dc=com",
        "poolSize": "8",
        "operationTimeoutSeconds": ".5",
    }
    settings = _ldap_settings(_env(render({"auth": {"backends": ["ldap"], "ldap": ldap}}), "auth"))
    assert (settings.pool_size, settings.operation_timeout) == (8, 0.5)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (setting, value)
        for setting in ("groupCountSeconds", "resyncSeconds")
        for value in (-1, -0.5, "1m", "", "inf", "nan")
    ],
)
def test_a_bad_ldap_group_count_or_resync_interval_is_refused_at_render(
    setting: str, value: object
) -> None:
    """As poolSize and operationTimeoutSeconds: refused by ``helm``, not by a crash-looping pod.

    Both take 0 (no caching of counts; no re-sync) and any finite number of
    seconds above it, as ``LdapSettings`` does; before, "1m" or -1 rendered
    and the Authenticator refused it at start.
    """
    ldap = {"enabled": True, "urls": ["ldaps://ldap.example.com"], "baseDn": "dc=example"}
    message = f'auth.ldap.{setting}: "{value}" is not a number of seconds, 0 or more'
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render({"auth": {"backends": ["ldap"], "ldap": {**ldap, setting: value}}})


def test_ldap_group_count_and_resync_intervals_the_backend_takes_render() -> None:
    """0 turns each off; a fraction, a quoted number and a big one (Helm writes 1e+06) render."""
    ldap = {"enabled": True, "urls": ["ldaps://ldap.example.com"], "baseDn": "dc=example"}
    for group_count, resync, expected in [
        (0, 0, (0.0, 0.0)),
        (0.5, "600", (0.5, 600.0)),
        (1_000_000, 86400, (1_000_000.0, 86400.0)),
    ]:
        values = {**ldap, "groupCountSeconds": group_count, "resyncSeconds": resync}
        env = _env(render({"auth": {"backends": ["ldap"], "ldap": values}}), "auth")
        settings = _ldap_settings(env)
        assert (settings.group_count_seconds, settings.resync_seconds) == expected


def test_ldap_read_replicas_and_oidc_settings_reach_the_authenticator() -> None:
    env = _env(rendered("values-production.yaml"), "auth")
    assert env["BUGLESS_AUTH_LDAP_RESYNC_SECONDS"]["value"] == "300"
    assert env["BUGLESS_AUTH_LDAP_URLS"]["value"] == (
        "ldaps://ldap-replica-1.corp.example.com,ldaps://ldap-replica-2.corp.example.com,"
        "ldaps://ldap-primary.corp.example.com"
    )
    assert (
        env["BUGLESS_AUTH_LDAP_BIND_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "bugless-ldap"
    )
    assert env["BUGLESS_AUTH_OIDC_ISSUER"]["value"] == "https://login.example.com/realms/corp"
    assert (
        env["BUGLESS_AUTH_OIDC_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["name"]
        == "bugless-oidc"
    )
    assert env["BUGLESS_AUTH_AUTHENTICATORS"]["value"] == "ldap,oidc,tls"
    assert env["BUGLESS_AUTH_LDAP_CA_FILE"]["value"] == "/etc/bugless/ldap-ca/ca.crt"
    assert env["BUGLESS_AUTH_TOKEN_KEY_FILES"]["value"] == "/etc/bugless/token-keys/current.pem"


def test_a_webhook_ca_secret_is_mounted_and_named_to_the_notifier() -> None:
    """notify.webhookCaSecretName: its ca.crt is the notifier's --webhook-ca-file."""
    notify = _deployment(render({"notify": {"webhookCaSecretName": "hooks-ca"}}), "notify")
    pod = notify["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["BUGLESS_NOTIFY_WEBHOOK_CA_FILE"]["value"] == "/etc/bugless/webhook-ca/ca.crt"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-ca"]
    assert volume["secret"]["secretName"] == "hooks-ca"
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "webhook-ca"]
    assert mount == {"name": "webhook-ca", "mountPath": "/etc/bugless/webhook-ca", "readOnly": True}
    default = _deployment(render(), "notify")["spec"]["template"]["spec"]
    assert "BUGLESS_NOTIFY_WEBHOOK_CA_FILE" not in env_of(default["containers"][0])
    assert all(v["name"] != "webhook-ca" for v in default.get("volumes", []))


def test_an_smtp_ca_secret_is_mounted_and_named_to_the_notifier() -> None:
    """notify.smtp.caSecretName: its ca.crt is the notifier's --smtp-ca-file."""
    values = {"notify": {"smtp": {"caSecretName": "relay-ca"}}}
    notify = _deployment(render(values), "notify")
    pod = notify["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["BUGLESS_NOTIFY_SMTP_CA_FILE"]["value"] == "/etc/bugless/smtp-ca/ca.crt"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "smtp-ca"]
    assert volume["secret"]["secretName"] == "relay-ca"
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "smtp-ca"]
    assert mount == {"name": "smtp-ca", "mountPath": "/etc/bugless/smtp-ca", "readOnly": True}
    default = _deployment(render(), "notify")["spec"]["template"]["spec"]
    assert "BUGLESS_NOTIFY_SMTP_CA_FILE" not in env_of(default["containers"][0])
    assert all(v["name"] != "smtp-ca" for v in default.get("volumes", []))


def test_a_web_only_release_uses_the_main_releases_backends() -> None:
    manifests = rendered("values-web-next.yaml")
    assert [d["metadata"]["name"] for d in of_kind(manifests, "Deployment")] == ["bugless-web"]
    assert not of_kind(manifests, "Job")
    env = _env(manifests, "web")
    assert env["BUGLESS_WEB_MODEL"]["value"] == "bugless-model.bugless.svc:50051"
    assert env["BUGLESS_WEB_AUTH"]["value"] == "bugless-auth.bugless.svc:50052"
    (ingress,) = of_kind(manifests, "Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["next.bugless.example.com"]


def test_steering_drains_to_another_release_and_the_ingress_can_follow() -> None:
    manifests = render(
        {
            "web": {"steerTo": "https://next.bugless.example.com"},
            "ingress": {"serviceName": "bugless-web-next-web"},
        }
    )
    assert (
        _env(manifests, "web")["BUGLESS_WEB_STEER_TO"]["value"]
        == "https://next.bugless.example.com"
    )
    (ingress,) = of_kind(manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "bugless-web-next-web", "port": {"name": "http"}}


def test_autoscaling_and_service_monitor_are_opt_in() -> None:
    assert not of_kind(rendered("values.yaml"), "HorizontalPodAutoscaler")
    assert not of_kind(rendered("values.yaml"), "ServiceMonitor")
    production = rendered("values-production.yaml")
    assert {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(production, "HorizontalPodAutoscaler")
    } == {
        "bugless-web",
        "bugless-api",
    }
    assert {m["metadata"]["name"] for m in of_kind(production, "ServiceMonitor")} == {
        "bugless-web",
        "bugless-api",
        "bugless-model",
        "bugless-auth",
        "bugless-notify",
    }


def test_notifier_runs_two_replicas_with_a_pdb_probes_and_smtp_credentials_from_a_secret() -> None:
    manifests = render({"notify": {"smtp": {"credentialsSecret": "bugless-smtp"}}})
    (deployment,) = [
        d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] == "bugless-notify"
    ]
    assert deployment["spec"]["replicas"] >= 2
    assert any(
        p["metadata"]["name"] == "bugless-notify" for p in of_kind(manifests, "PodDisruptionBudget")
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["notify", "serve"]
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container)
    env = _env(manifests, "notify")
    assert env["BUGLESS_NOTIFY_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "bugless-smtp",
        "key": "password",
    }
    assert env["BUGLESS_NOTIFY_PUBLIC_URL"]["value"] == "https://bugless.example.com"


def test_tracing_is_off_by_default_and_reaches_every_service_when_on() -> None:
    off = render()
    for deployment in of_kind(off, "Deployment"):
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    on = render({"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318"}})
    deployments = of_kind(on, "Deployment")
    assert deployments
    for deployment in deployments:
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
            == "http://otel-collector.observability:4318"
        )
    for policy in of_kind(on, "NetworkPolicy"):
        ports = [p for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])]
        if ports:
            assert {"protocol": "TCP", "port": 4318} in ports, policy["metadata"]["name"]


def test_the_people_ca_is_off_by_default_and_mounted_when_named() -> None:
    assert "BUGLESS_AUTH_PEOPLE_CA_CERT" not in _env(render(), "auth")
    manifests = render({"auth": {"peopleCa": {"secretName": "bugless-people-ca"}}})
    env = _env(manifests, "auth")
    assert env["BUGLESS_AUTH_PEOPLE_CA_CERT"]["value"] == "/etc/bugless/people-ca/tls.crt"
    assert env["BUGLESS_AUTH_PEOPLE_CA_KEY"]["value"] == "/etc/bugless/people-ca/tls.key"
    pod = _deployment(manifests, "auth")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["people-ca"]["secret"]["secretName"] == "bugless-people-ca"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["people-ca"] == {
        "name": "people-ca",
        "mountPath": "/etc/bugless/people-ca",
        "readOnly": True,
    }


@pytest.mark.parametrize("component", ["web", "api", "model"])
def test_pods_with_transfers_outlive_their_transfer_bound(component: str) -> None:
    """One value sets both a service's bound on transfers and its pod's grace period.

    The web, the API and the Model let an attachment upload or download in
    progress run up to ``drainTransferSeconds`` after they stop accepting;
    Kubernetes must not kill the pod sooner (preStop and the drain come first).
    """
    for transfers, period in (
        (None, 5 + 5 + 120 + 5),
        (300, 5 + 5 + 300 + 5),
        (20, 5 + 5 + 20 + 5),
        (10, 5 + 5 + 20 + 5),  # below the grace: the grace counts
    ):
        values = {} if transfers is None else {component: {"drainTransferSeconds": transfers}}
        deployment = _deployment(render(values), component)
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        variable = f"BUGLESS_{component.upper()}_DRAIN_TRANSFER_SECONDS"
        assert env[variable]["value"] == str(transfers or 120)
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == period


def test_services_without_transfers_keep_their_grace_period() -> None:
    for component in ("auth", "notify"):
        deployment = _deployment(rendered("values.yaml"), component)
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        assert f"BUGLESS_{component.upper()}_DRAIN_TRANSFER_SECONDS" not in env
        grace = 30 if component == "notify" else 20
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == (
            5 + 5 + grace + 5
        )


def test_web_workers_reach_the_command() -> None:
    assert _env(render({}), "web")["BUGLESS_WEB_WORKERS"]["value"] == "1"
    assert _env(render({"web": {"workers": 2}}), "web")["BUGLESS_WEB_WORKERS"]["value"] == "2"


def test_attachments_stay_in_the_database_unless_an_s3_bucket_is_named() -> None:
    assert not any(name.startswith(("BUGLESS_BLOB", "AWS_")) for name in _env(render(), "model"))
    s3 = {
        "type": "s3",
        "s3": {
            "bucket": "bugless-attachments",
            "endpointUrl": "https://minio.storage:9000",
            "addressingStyle": "path",
            "sse": "AES256",
            "credentialsSecret": {"name": "bugless-s3"},
        },
    }
    env = _env(render({"model": {"blobStore": s3}}), "model")
    assert env["BUGLESS_BLOB_STORE"]["value"] == "s3"
    assert env["BUGLESS_BLOB_S3_BUCKET"]["value"] == "bugless-attachments"
    assert env["BUGLESS_BLOB_S3_ENDPOINT_URL"]["value"] == "https://minio.storage:9000"
    assert env["BUGLESS_BLOB_S3_ADDRESSING_STYLE"]["value"] == "path"
    assert env["BUGLESS_BLOB_S3_SSE"]["value"] == "AES256"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "bugless-s3",
        "key": "access-key-id",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secret-access-key"
    for component in ("web", "api", "auth", "notify"):
        assert "BUGLESS_BLOB_STORE" not in _env(render({"model": {"blobStore": s3}}), component)
    role = {"type": "s3", "s3": {"bucket": "b"}}
    assert "AWS_ACCESS_KEY_ID" not in _env(render({"model": {"blobStore": role}}), "model")


def test_the_notifier_seals_webhook_secrets_with_an_optional_secrets_keys() -> None:
    ref = _env(render(), "notify")["BUGLESS_NOTIFY_SECRET_KEYS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "bugless-webhook-secret-keys", "key": "keys", "optional": True}


def test_the_in_cluster_database_archives_to_object_storage_when_backups_are_on() -> None:
    cnpg: dict[str, Any] = {"enabled": True}
    plain = render({"postgresql": {"cnpg": cnpg}})
    (cluster,) = of_kind(plain, "Cluster")
    assert "backup" not in cluster["spec"]
    assert not of_kind(plain, "ScheduledBackup")
    cnpg["backup"] = {
        "enabled": True,
        "destinationPath": "s3://backups/db/",
        "endpointURL": "https://minio.storage:9000",
        "s3Credentials": {"secretName": "db-backup-keys"},
    }
    manifests = render({"postgresql": {"cnpg": cnpg}})
    (cluster,) = of_kind(manifests, "Cluster")
    store = cluster["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"] == "s3://backups/db/"
    assert store["endpointURL"] == "https://minio.storage:9000"
    assert store["s3Credentials"]["accessKeyId"] == {
        "name": "db-backup-keys",
        "key": "ACCESS_KEY_ID",
    }
    assert cluster["spec"]["backup"]["retentionPolicy"] == "30d"
    (scheduled,) = of_kind(manifests, "ScheduledBackup")
    assert scheduled["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    assert scheduled["spec"]["schedule"] == "0 0 2 * * *"
    (production,) = of_kind(rendered("values-production.yaml"), "Cluster")
    role = production["spec"]["backup"]["barmanObjectStore"]["s3Credentials"]
    assert role == {"inheritFromIAMRole": True}


def test_the_api_is_told_where_the_notifier_is_only_when_there_is_one() -> None:
    def api_env(values: dict[str, object]) -> dict[str, dict[str, str]]:
        (deployment,) = [
            d
            for d in of_kind(render(values), "Deployment")
            if d["metadata"]["name"] == "bugless-api"
        ]
        return env_of(deployment["spec"]["template"]["spec"]["containers"][0])

    assert api_env({})["BUGLESS_API_NOTIFY"]["value"].startswith("bugless-notify.")
    assert api_env({})["BUGLESS_API_NOTIFY"]["value"].endswith(":50054")
    assert "BUGLESS_API_NOTIFY" not in api_env({"notify": {"enabled": False}})
