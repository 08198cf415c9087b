"""Safe rollouts: build ids, the asset archive, and requests from pages of another build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, issue_form_of, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web.assets import AssetCatalog
from bugless_web.builds import (
    FORM_CONTRACT,
    MANIFEST,
    build_id,
    compatible,
    contract_of,
    export_assets,
    safe_hashed_name,
)
from bugless_web.commands import web_group

OTHER_CONTRACT = f"c{FORM_CONTRACT + 1}-0123456789ab"
SAME_CONTRACT_OTHER_ASSETS = f"c{FORM_CONTRACT}-ba9876543210"


def test_build_id_names_the_contract_and_changes_with_any_asset() -> None:
    first = build_id(["app.1111.css", "app.2222.js"])
    assert contract_of(first) == FORM_CONTRACT
    assert build_id(["app.2222.js", "app.1111.css"]) == first  # order does not matter
    assert build_id(["app.3333.css", "app.2222.js"]) != first
    assert AssetCatalog().build_id.startswith(f"c{FORM_CONTRACT}-")


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (None, True),  # no build named (curl, a form without script): served as before
        ("", True),
        (SAME_CONTRACT_OTHER_ASSETS, True),  # only assets changed: compatible
        (OTHER_CONTRACT, False),
        ("c1", False),  # not a build id: treated as another contract
        ("garbage<script>", False),
    ],
)
def test_compatibility_is_by_form_contract(theirs: str | None, expected: bool) -> None:
    assert compatible(theirs, f"c{FORM_CONTRACT}-aaaaaaaaaaaa") is expected


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.css", "..", ".hidden", "", "x\\y.js"])
def test_archive_names_cannot_leave_the_archive(name: str) -> None:
    assert not safe_hashed_name(name)


def test_export_keeps_the_last_releases_and_files_they_share(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    export_assets("c1-aaaa", {"app.a1.css": b"a", "logo.l1.svg": b"<svg/>"}, archive, keep=2)
    export_assets("c1-bbbb", {"app.b1.css": b"b", "logo.l1.svg": b"<svg/>"}, archive, keep=2)
    result = export_assets(
        "c2-cccc", {"app.c1.css": b"c", "logo.l1.svg": b"<svg/>"}, archive, keep=2
    )
    assert result.releases == ["c2-cccc", "c1-bbbb"]
    assert result.removed == ["app.a1.css"]  # the shared logo stays: kept releases name it
    assert sorted(p.name for p in archive.iterdir()) == [
        "app.b1.css",
        "app.c1.css",
        "logo.l1.svg",
        MANIFEST,
    ]
    manifest = json.loads((archive / MANIFEST).read_text())
    assert [r["build"] for r in manifest["releases"]] == ["c2-cccc", "c1-bbbb"]
    with pytest.raises(ValueError, match="at least 1"):
        export_assets("c3-dddd", {}, archive, keep=0)


def test_catalog_serves_archived_releases_after_its_own(tmp_path: Path) -> None:
    (tmp_path / "app.0ld0ld0ld0l.css").write_bytes(b"body{color:red}")
    (tmp_path / "secret.txt").write_bytes(b"not an asset")
    catalog = AssetCatalog(archive=tmp_path)
    own = catalog.url("app.css").removeprefix("/static/")
    assert catalog.by_hashed_name(own) is not None
    old = catalog.by_hashed_name("app.0ld0ld0ld0l.css")
    assert old is not None
    assert old.content == b"body{color:red}"
    assert old.media_type.startswith("text/css")
    assert catalog.by_hashed_name("../" + tmp_path.name + "/secret.txt") is None
    assert catalog.by_hashed_name("missing.123.js") is None
    assert AssetCatalog().by_hashed_name("app.0ld0ld0ld0l.css") is None  # no archive


def test_assets_export_command_writes_this_release(tmp_path: Path) -> None:
    result = CliRunner().invoke(web_group, ["assets", "export", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    catalog = AssetCatalog()
    assert catalog.build_id in result.output
    for name, content in catalog.files.items():
        assert (tmp_path / "a" / name).read_bytes() == content
    refused = CliRunner().invoke(
        web_group, ["assets", "export", str(tmp_path / "a"), "--keep", "0"]
    )
    assert refused.exit_code == 2
    assert "--keep" in refused.output


async def test_pages_name_their_build(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    page = await client.get("/")
    build = AssetCatalog().build_id
    assert f'<meta name="bugless-build" content="{build}">' in page.text


async def test_a_form_from_another_contract_changes_nothing_and_gives_the_text_back(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Rolled over")
    await sign_in(client, "bob")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    form["_build"] = OTHER_CONTRACT
    form["comment"] = "A long comment <b>typed</b> on the old page"
    response = await client.post(
        f"/issues/{issue.id}",
        data=form,
        headers={"referer": f"http://testserver.local/issues/{issue.id}"},
        follow_redirects=False,
    )
    assert response.status_code == 409
    assert response.headers["x-bugless-reload"] == "1"
    assert "bugless was updated while this page was open" in response.text
    assert "A long comment &lt;b&gt;typed&lt;/b&gt; on the old page" in response.text
    assert f'href="/issues/{issue.id}"' in response.text
    current = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert current.version == issue.version  # nothing was written
    # The same form from a build of this contract (other assets) goes through.
    form["_build"] = SAME_CONTRACT_OTHER_ASSETS
    accepted = await client.post(f"/issues/{issue.id}", data=form, follow_redirects=False)
    assert accepted.status_code == 303, accepted.text


@pytest.mark.parametrize("path", ["//search?q=x", "//evil.example/search", "/\\evil.example/"])
async def test_the_reload_link_of_a_stale_form_stays_on_this_site(
    client: AsyncTestClient[Any], path: str
) -> None:
    """A page served at ``//search`` (leading slashes collapse) named a link to host ``search``."""
    csrf = await sign_in(client, "bob")
    served = await client.get(f"http://testserver.local{path}")
    if path == "//search?q=x":
        # The site does serve a page with forms there: a real Referer.
        assert served.status_code == 200
        assert 'action="/signout"' in served.text
    stale = await client.post(
        "/signout",
        data={"_csrf": csrf, "_build": OTHER_CONTRACT},
        headers={"referer": f"http://testserver.local{path}"},
        follow_redirects=False,
    )
    assert stale.status_code == 409
    assert 'href="/" class="button primary"' in stale.text, stale.text
    assert "evil.example" not in stale.text
    assert 'href="//' not in stale.text
    assert (await client.get("/")).status_code == 200  # still signed in: nothing was done


async def test_script_requests_from_another_contract_are_told_to_reload(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Live and stale")
    csrf = await sign_in(client, "bob")
    ours = AssetCatalog().build_id
    stale = await client.post(
        "/preview",
        data={"text": "**hi**", "_csrf": csrf},
        headers={"x-bugless-build": OTHER_CONTRACT, "x-csrf-token": csrf},
    )
    assert stale.status_code == 409
    assert stale.headers["x-bugless-reload"] == "1"
    assert stale.headers["x-bugless-build"] == ours
    fresh = await client.post(
        "/preview",
        data={"text": "**hi**", "_csrf": csrf},
        headers={"x-bugless-build": ours, "x-csrf-token": csrf},
    )
    assert fresh.status_code == 200, fresh.text
    stream = await client.get(
        f"/issues/{issue.id}/events?_build={OTHER_CONTRACT}",
        headers={"accept": "text/event-stream"},
    )
    assert stream.status_code == 200
    assert f"event: reload\ndata: {ours}" in stream.text
