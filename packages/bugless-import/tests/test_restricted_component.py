"""``--restricted-component``: the source's restricted issues go into one narrower component.

A Redmine private issue or a Jira issue with a security level was left out
(only named in the report); with the option it is imported, whole history
and all, into the component the admin names, never where its own component
maps. The run refuses to start, writing nothing, when that component does
not exist or is not narrower than the import's (its ACL chain, from the
Model, against ``--component-root``'s and the mapped components').
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from import_support import (
    ADMIN,
    MakeSettings,
    _component,
    _jira_export,
    find,
    history,
    redmine_tree,
)
from redmine_server import Redmine, serve

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.restricted import RestrictedComponentRefused
from bugless_import.sources.jira import JiraImporter
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1
from bugless_testing.start_refusals import run_bugless

KEY = "0123456789abcdef0123456789abcdef01234567"
PRIVATE = (
    'a private issue (Redmine shows it to its author, its assignee and those with "View '
    'private issues")'
)


async def test_a_redmine_private_issue_goes_into_the_restricted_component(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    tree = redmine_tree(tmp_path, 8520)
    path = tree / "issues" / "8520.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["issue"]["is_private"] = True
    path.write_text(json.dumps(data), encoding="utf-8")
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    secure = await _component(model, "Secure8520", "security")

    with serve(Redmine(tree, KEY)) as server:
        importer = RedmineImporter(server.url, {"api-key-file": str(key_file)})
        settings = make_settings(component_root="Root8520", restricted_component="Secure8520")
        report = await run_import(importer, settings)

    (private,) = await find(model, "redmine:8520")
    assert private.component_id == secure.id
    entries = await history(model, private.id)
    fields = [c.field for e in entries[1:] for c in e.changes]
    assert not [f for f in fields if f.startswith("component")], (
        "the category change (Redmine moved it) would move it out of the component"
    )
    assert "Fixed the buffer." in [e.comment for e in entries], "its history is imported"
    assert "assignee" in fields, "the moving journal's other change stays"
    (public,) = await find(model, "redmine:8521")
    where = await call(
        model.get_component,
        v1.GetComponentRequest(caller=ADMIN, component_id=public.component_id),
    )
    assert where.path.startswith("Root8520>"), "the others go where their category maps"
    assert report.restricted_issues == [("redmine:8520", PRIVATE)]
    assert report.created == 3
    text = report.render()
    assert (
        "  restricted issues imported into Secure8520 (the source shows them only to some "
        "readers): 1 issue\n    redmine:8520: a private issue" in text
    )
    assert "    Secure8520 is readable by group:security (the ACL of Secure8520)" in text
    assert "    narrower than Root8520: everyone signed in may read that" in text
    assert "restricted issues not imported" not in text


async def test_a_jira_secured_issue_needs_an_own_acl_where_narrower_cannot_be_told(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """Groups eng and eng-security, no member known: bugless cannot tell which is narrower.

    The component's own ACL is what the admin set for these issues: accepted,
    and the report says what was compared for the admin to confirm.
    """
    await _component(model, "RootRSA", "eng")
    await _component(model, "SecRSA", "eng-security")
    root = _jira_export(tmp_path, "RSA")

    settings = make_settings(component_root="RootRSA", restricted_component="SecRSA")
    report = await run_import(JiraImporter(str(root), {}), settings)

    (secured,) = await find(model, "jira:RSA-2")
    secure = await call(model.get_component, v1.GetComponentRequest(caller=ADMIN, path="SecRSA"))
    assert secured.component_id == secure.id
    assert len(await find(model, "jira:RSA-1")) == 1
    assert report.restricted_issues == [
        (
            "jira:RSA-2",
            "issue security level 'Staff only' (Jira shows it to that level's members only)",
        )
    ]
    assert report.restricted_checked[1:] == [
        "not comparable with RootRSA (group:eng (the ACL of RootRSA)): the Authenticator knows "
        "no user who may read that yet (a directory's members count once they have signed in); "
        "accepted because SecRSA has its own ACL: check that only those who may read the "
        "restricted issues are in it"
    ]


async def test_an_issue_imported_before_it_was_restricted_is_named_where_it_stays(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """The import moves no issue: one an earlier run put in an open component is a warning."""
    await _component(model, "SecRSW", "security")
    root = _jira_export(tmp_path / "before", "RSW")
    later = root / "search-0001.json"
    data = json.loads(later.read_text(encoding="utf-8"))
    for item in data["issues"]:
        item["fields"].pop("security", None)
    later.write_text(json.dumps(data), encoding="utf-8")
    await run_import(JiraImporter(str(root), {}), make_settings(component_root="RootRSW"))
    (before,) = await find(model, "jira:RSW-2")

    secured = _jira_export(tmp_path / "after", "RSW")
    settings = make_settings(component_root="RootRSW", restricted_component="SecRSW", refresh=True)
    report = await run_import(JiraImporter(str(secured), {}), settings)

    (after,) = await find(model, "jira:RSW-2")
    assert after.component_id == before.component_id
    assert report.warnings[-1] == (
        f"jira:RSW-2 (issue {after.id}) is restricted in the source but an earlier run imported "
        "it into RootRSW, where it stays (the import moves no issue): move it to SecRSW by hand"
    )


#: (case, components to make as (path, groups), --restricted-component, message start).
REFUSALS = [
    (
        "missing",
        [],
        "NoSuchRSB",
        "--restricted-component 'NoSuchRSB': no such component. Create it and give it an ACL",
    ),
    (
        "open",
        [("OpenRSC", ())],
        "OpenRSC",
        "--restricted-component 'OpenRSC': neither it nor a component above it has an ACL, so "
        "everyone signed in may read it",
    ),
    (
        "under-the-root",
        [("RootRSD", ("eng",)), ("RootRSD>Private", ("security",))],
        "RootRSD>Private",
        "--restricted-component 'RootRSD>Private': everyone who may read RootRSD (group:eng "
        "(the ACL of RootRSD)) may read RootRSD>Private too",
    ),
    (
        "inherited-only",
        [("RootRSE", ("eng",)), ("SecRSE", ("security",)), ("SecRSE>Imported", ())],
        "SecRSE>Imported",
        "--restricted-component 'SecRSE>Imported': its readers (group:security (the ACL of "
        "SecRSE)) and those of RootRSE (group:eng (the ACL of RootRSE)) are not one a part of "
        "the other",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
async def test_a_component_not_narrower_than_the_import_is_refused_before_anything_is_written(
    case: tuple[str, list[tuple[str, tuple[str, ...]]], str, str],
    tmp_path: Path,
    make_settings: MakeSettings,
    model: v1.ModelStub,
) -> None:
    name, components, restricted, message = case
    for path, groups in components:
        await _component(model, path, *groups)
    project = f"RF{REFUSALS.index(case)}"
    root_path = components[0][0] if components and components[0][1] else f"Root{project}"
    root = _jira_export(tmp_path, project)

    settings = make_settings(component_root=root_path, restricted_component=restricted)
    everything = v1.ListComponentsRequest(caller=ADMIN, page=v1.PageRequest(page_size=1000))
    before = (await call(model.list_components, everything)).components
    with pytest.raises(RestrictedComponentRefused) as refused:
        await run_import(JiraImporter(str(root), {}), settings)

    assert refused.value.message.startswith(message), refused.value.message
    assert await find(model, f"jira:{project}-1") == [], f"{name}: nothing is imported"
    assert await find(model, f"jira:{project}-2") == []
    after = (await call(model.list_components, everything)).components
    assert [c.path for c in after] == [c.path for c in before], "no component is made"


async def test_the_command_exits_2_naming_the_missing_component(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    settings = make_settings()
    assert settings.model is not None
    assert settings.auth is not None
    root = _jira_export(tmp_path, "RSX")
    args = [
        "import", "jira", str(root),
        "--model", f"{settings.model.host}:{settings.model.port}",
        "--auth", f"{settings.auth.host}:{settings.auth.port}",
        "--tls-ca", str(settings.tls_ca), "--tls-cert", str(settings.tls_cert),
        "--tls-key", str(settings.tls_key), "--state-dir", str(tmp_path / "state"),
        "--restricted-component", "Nowhere>RSX", "--quiet",
    ]  # fmt: skip

    result = await asyncio.to_thread(run_bugless, args, {"BUGLESS_IMPORT_TOKEN": settings.token})

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert result.stderr.startswith(
        "error: --restricted-component 'Nowhere>RSX': no such component."
    ), output
    assert await find(model, "jira:RSX-1") == []
