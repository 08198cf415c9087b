"""The Authenticator's `tls` backend gets the mapping it cannot start without.

Every shipped values file enables the `tls` backend (bots sign in with client
certificates), and the backend refuses to open without a mapping. The chart
once set ``BUGLESS_AUTH_AUTHENTICATORS=...,tls`` and nothing else, so no
shipped configuration could start an Authenticator. Here the rendered pod is
followed as the kubelet would: the ConfigMap's data is written where the pod
mounts it, the container's environment is read the way ``bugless auth serve``
reads it, and the real backend opens from that.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import helm_python
import pytest
import trustme
from chart_rendering import VALUES_FILES, Manifest, env_of, load_values, of_kind, render
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bugless_auth.settings import options_from_environment
from bugless_auth.tls import TlsAuthenticator, ca_bundle_content, mapping_content

#: Values files of releases that use another release's Authenticator.
WITHOUT_AUTHENTICATOR = frozenset({"values-web-next.yaml"})

#: A mapping entry as an operator writes one: the key is the certificate's CN
#: itself (a SAN email, or ``sha256:`` and the fingerprint), never "cn=...".
_BOT = """\
["release-bot"]
username = "release-bot"
groups = ["bots"]
"""


def _auth_pod(manifests: list[Manifest]) -> dict[str, Any]:
    (auth,) = [
        d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("-auth")
    ]
    pod: dict[str, Any] = auth["spec"]["template"]["spec"]
    return pod


def _config_maps(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {m["metadata"]["name"]: m.get("data", {}) for m in of_kind(manifests, "ConfigMap")}


async def _open_as_the_pod_would(
    manifests: list[Manifest],
    root: Path,
    config_maps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]] | None = None,
) -> TlsAuthenticator:
    """Mount the pod's ConfigMap (and ``secrets``') volumes under ``root``; open its tls backend."""
    pod = _auth_pod(manifests)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            source, data = volume["configMap"], config_maps[volume["configMap"]["name"]]
        elif secrets is not None and "secret" in volume and "items" in volume["secret"]:
            source = volume["secret"]
            data = secrets.get(source["secretName"], {})
            if not data:
                continue  # another Secret (the token keys, internal TLS): not the backend's
        else:
            continue
        for item in source["items"]:
            path = root / mount["mountPath"].lstrip("/") / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[item["key"]], encoding="utf-8")
    environ = {
        name: str(entry["value"]) for name, entry in env_of(container).items() if "value" in entry
    }
    backends = environ["BUGLESS_AUTH_AUTHENTICATORS"].split(",")
    assert "tls" in backends
    options = dict(options_from_environment(environ, backends)["tls"])
    options["mapping_file"] = str(root / options["mapping_file"].lstrip("/"))
    if "ca_file" in options:
        options["ca_file"] = str(root / options["ca_file"].lstrip("/"))
        ca_bundle_content(await asyncio.to_thread(Path(options["ca_file"]).read_bytes))
    # What `bugless auth serve` checks before it starts, then the backend itself.
    mapping_content(await asyncio.to_thread(Path(options["mapping_file"]).read_bytes))
    return await TlsAuthenticator.open(options)


@pytest.mark.parametrize("values_file", VALUES_FILES)
async def test_every_shipped_configuration_with_tls_opens_its_backend(
    values_file: str, tmp_path: Path
) -> None:
    manifests = render(load_values(values_file))
    runs_auth = any(
        d["metadata"]["name"].endswith("-auth") for d in of_kind(manifests, "Deployment")
    )
    assert runs_auth == (values_file not in WITHOUT_AUTHENTICATOR)
    if not runs_auth:
        return
    backend = await _open_as_the_pod_would(manifests, tmp_path, _config_maps(manifests))
    assert backend.mapping == {}, "no bot is mapped until the operator maps one"


async def test_the_charts_mapping_content_lets_its_bots_in(tmp_path: Path) -> None:
    """The content, through the chart's ConfigMap and the pod's mount, maps a real
    certificate with that CN to its user and groups (before, the test's key was
    "cn=release-bot", which no certificate matches, and it only read the entry back)."""
    manifests = render({"auth": {"tlsMapping": {"content": _BOT}}})
    backend = await _open_as_the_pod_would(manifests, tmp_path, _config_maps(manifests))
    bots_ca = trustme.CA()
    found = await backend.authenticate(_der(bots_ca, "release-bot"))
    assert found is not None
    assert (found.username, found.groups, found.bot) == ("release-bot", ("bots",), True)
    assert await backend.authenticate(_der(bots_ca, "other-bot")) is None


async def test_an_operators_config_map_is_mounted_and_the_chart_makes_none(
    tmp_path: Path,
) -> None:
    manifests = render({"auth": {"tlsMapping": {"configMapName": "bots", "key": "bots.json"}}})
    assert "bots" not in _config_maps(manifests)
    assert not [name for name in _config_maps(manifests) if name.endswith("-auth-tls-mapping")]
    volume = next(v for v in _auth_pod(manifests)["volumes"] if v["name"] == "tls-mapping")
    assert volume["configMap"] == {
        "name": "bots",
        "items": [{"key": "bots.json", "path": "bots.json"}],
    }
    kept = {"bots": {"bots.json": '{"ci": {"username": "ci"}}'}}
    backend = await _open_as_the_pod_would(manifests, tmp_path, kept)
    found = await backend.authenticate(_der(trustme.CA(), "ci"))
    assert found is not None
    assert found.username == "ci"


def test_a_mapping_directory_is_mounted_not_a_sub_path() -> None:
    """A subPath mount never sees the ConfigMap change: a new bot would wait for a rollout."""
    (container,) = _auth_pod(render())["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls-mapping"]
    assert mount == {
        "name": "tls-mapping",
        "mountPath": "/etc/bugless/tls-mapping",
        "readOnly": True,
    }


def test_without_the_tls_backend_there_is_no_mapping() -> None:
    manifests = render({"auth": {"backends": ["local"]}})
    pod = _auth_pod(manifests)
    assert "BUGLESS_AUTH_TLS_MAPPING_FILE" not in env_of(pod["containers"][0])
    assert all(v["name"] != "tls-mapping" for v in pod["volumes"])
    assert not [name for name in _config_maps(manifests) if name.endswith("-auth-tls-mapping")]


def _der(ca: trustme.CA, common_name: str) -> bytes:
    leaf = ca.issue_cert("bot.invalid", common_name=common_name)
    pem = leaf.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


async def test_the_ca_secret_is_the_backends_ca_file_and_refuses_another_cas_bot(
    tmp_path: Path,
) -> None:
    """auth.tlsMapping.caSecretName: its ca.crt, mounted where the pod reads it, is the
    backend's ca_file; a mapped CN of that CA signs in, the same CN from another CA is
    refused. Before, the chart could not set ca_file at all."""
    bots_ca, other_ca = trustme.CA(), trustme.CA()
    by_cn = '["release-bot"]\nusername = "release-bot"\n'
    values = {"auth": {"tlsMapping": {"content": by_cn, "caSecretName": "bots-ca"}}}
    manifests = render(values)
    pod = _auth_pod(manifests)
    (container,) = pod["containers"]
    assert env_of(container)["BUGLESS_AUTH_TLS_CA_FILE"]["value"] == "/etc/bugless/tls-ca/ca.crt"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls-ca"]
    # Only the certificates: whatever else the Secret holds (a key) is not mounted.
    assert volume["secret"] == {
        "secretName": "bots-ca",
        "defaultMode": 0o440,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls-ca"]
    assert mount == {"name": "tls-ca", "mountPath": "/etc/bugless/tls-ca", "readOnly": True}

    secrets = {"bots-ca": {"ca.crt": bots_ca.cert_pem.bytes().decode()}}
    backend = await _open_as_the_pod_would(manifests, tmp_path, _config_maps(manifests), secrets)
    assert len(backend.cas) == 1
    found = await backend.authenticate(_der(bots_ca, "release-bot"))
    assert found is not None
    assert found.username == "release-bot"
    assert await backend.authenticate(_der(other_ca, "release-bot")) is None
    assert "not signed by a CA" in (await backend.untrusted(_der(other_ca, "release-bot")) or "")


def test_without_a_ca_secret_there_is_no_ca_file() -> None:
    pod = _auth_pod(render())
    assert "BUGLESS_AUTH_TLS_CA_FILE" not in env_of(pod["containers"][0])
    assert all(v["name"] != "tls-ca" for v in pod["volumes"])
    assert all(m["name"] != "tls-ca" for m in pod["containers"][0]["volumeMounts"])


@pytest.mark.parametrize(
    "mapping",
    [
        {"content": _BOT},
        {"configMapName": "bots"},
        {"caSecretName": "bots-ca"},
        {"content": _BOT, "caSecretName": "bots-ca"},
        # Before, the key's default was in values.yaml: one the deployer set
        # could not be told from it, and was ignored.
        {"key": "bots.json"},
        {"configMapName": "bots", "key": "bots.json"},
    ],
)
def test_tls_mapping_values_without_the_tls_backend_fail_the_render(
    mapping: dict[str, str],
) -> None:
    """Before, they were ignored without a word: the operator believed bots were mapped
    and every bot certificate was refused. The message names what is set and the fix."""
    named = ", ".join(
        f"auth.tlsMapping.{k}"
        for k in ("configMapName", "key", "content", "caSecretName")
        if k in mapping
    )
    with pytest.raises(helm_python.HelmError) as failed:
        render({"auth": {"backends": ["local", "ldap"], "tlsMapping": mapping}})
    message = " ".join(str(failed.value).split())
    assert f"{named} set, but auth.backends (local, ldap) has no tls" in message
    assert "add tls to auth.backends, or remove" in message


def test_the_mapping_key_defaults_to_certificates_toml_in_the_charts_config_map() -> None:
    """The default the chart documents, now the template's: the file and the ConfigMap's key."""
    manifests = render({"auth": {"tlsMapping": {"content": _BOT}}})
    made = [data for name, data in _config_maps(manifests).items() if name.endswith("-tls-mapping")]
    assert [list(data) for data in made] == [["certificates.toml"]]
    pod = _auth_pod(manifests)
    volume = next(v for v in pod["volumes"] if v["name"] == "tls-mapping")
    assert volume["configMap"]["items"] == [
        {"key": "certificates.toml", "path": "certificates.toml"}
    ]
    (container,) = pod["containers"]
    assert env_of(container)["BUGLESS_AUTH_TLS_MAPPING_FILE"]["value"] == (
        "/etc/bugless/tls-mapping/certificates.toml"
    )
