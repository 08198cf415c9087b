"""``--restricted-component`` compares readers by the groups the Authenticator knows them in.

Before, a group was a name to the check: a component whose ACL named
``sec`` under a root naming ``eng`` and ``sec`` was "narrower" although every
``eng`` member was in ``sec`` too, so everyone who read the root read the
restricted issues; and groups not one a part of the other by name were
accepted on the admin's word alone. Now the Authenticator lists the members
it knows (``ListGroupMembers``), and the Model will judge each reader by the
groups they sign in with, so the check does the same.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from import_support import ADMIN, MakeSettings, _component, _jira_export, find

from bugless_core.cli import EXIT_USAGE
from bugless_core.clients import call
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.restricted import RestrictedComponentRefused
from bugless_import.sources.jira import JiraImporter
from bugless_proto import v1
from bugless_testing.start_refusals import run_bugless

#: ``bugless auth serve`` as the release before ListGroupMembers.
PREVIOUS = Path(__file__).with_name("previous_authenticator.py")


async def test_a_component_some_readers_of_the_root_are_not_in_is_narrower(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    bugless_stack.add_user("gm-ann", "pw-gm-ann", groups=["gm1-eng", "gm1-sec"])
    bugless_stack.add_user("gm-bob", "pw-gm-bob", groups=["gm1-eng"])
    await _component(model, "RootGM1", "gm1-eng")
    await _component(model, "SecGM1", "gm1-sec")

    settings = make_settings(component_root="RootGM1", restricted_component="SecGM1")
    report = await run_import(JiraImporter(str(_jira_export(tmp_path, "GMA")), {}), settings)

    (secured,) = await find(model, "jira:GMA-2")
    secure = await call(model.get_component, v1.GetComponentRequest(caller=ADMIN, path="SecGM1"))
    assert secured.component_id == secure.id
    assert report.restricted_checked[1:] == [
        "narrower than RootGM1 (group:gm1-eng (the ACL of RootGM1)): 1 of the 2 users the "
        "Authenticator knows may read that may not read SecGM1 (group members as of their last "
        "sign-in)"
    ]


@pytest.fixture(scope="module")
def gm2_users(bugless_stack: LocalStack) -> None:
    """Every member of gm2-eng the Authenticator knows is in gm2-sec too."""
    bugless_stack.add_user("gm-cat", "pw-gm-cat", groups=["gm2-eng", "gm2-sec"])
    bugless_stack.add_user("gm-dan", "pw-gm-dan", groups=["gm2-eng", "gm2-sec"])


@pytest.mark.usefixtures("gm2_users")
@pytest.mark.parametrize(
    "case",
    [
        # Before, accepted: "sec" is a strict part of "eng, sec" by name.
        ("GMB", ("gm2-eng", "gm2-sec")),
        # Before, accepted on the component's own ACL: not comparable by name.
        ("GMC", ("gm2-eng",)),
    ],
)
async def test_a_component_every_known_reader_of_the_root_may_read_is_refused(
    case: tuple[str, tuple[str, ...]],
    tmp_path: Path,
    make_settings: MakeSettings,
    model: v1.ModelStub,
) -> None:
    project, root_groups = case
    await _component(model, f"Root{project}", *root_groups)
    await _component(model, f"Sec{project}", "gm2-sec")

    settings = make_settings(component_root=f"Root{project}", restricted_component=f"Sec{project}")
    with pytest.raises(RestrictedComponentRefused) as refused:
        await run_import(JiraImporter(str(_jira_export(tmp_path, project)), {}), settings)

    assert refused.value.message.startswith(
        f"--restricted-component 'Sec{project}': every one of the 2 users the Authenticator "
        f"knows may read Root{project} ("
    ), refused.value.message
    assert "by the groups they signed in with" in refused.value.message
    assert await find(model, f"jira:{project}-1") == [], "nothing is imported"


async def test_a_component_whose_access_list_names_a_person_is_checked_and_named(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """An ACL entry of one person (a Security component only ann reads) is compared and named.

    The report shows the person by username, which only the Authenticator
    knows (the Model's entry holds the user id). Before, the import identity
    could not ask for it, and the run stopped with "GetUsers may not be
    called by service identity 'import'" before anything was checked.
    """
    ann = bugless_stack.add_user("pu-ann", "pw-pu-ann", groups=["pu-eng"])
    bugless_stack.add_user("pu-bob", "pw-pu-bob", groups=["pu-eng"])
    await _component(model, "RootPU", "pu-eng")
    await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=ADMIN,
            name="SecPU",
            acl=[v1.AclEntry(principal=v1.Principal(user=ann["user_id"]), role=v1.Role.EDITOR)],
        ),
    )

    settings = make_settings(component_root="RootPU", restricted_component="SecPU")
    report = await run_import(JiraImporter(str(_jira_export(tmp_path, "GPU")), {}), settings)

    (secured,) = await find(model, "jira:GPU-2")
    secure = await call(model.get_component, v1.GetComponentRequest(caller=ADMIN, path="SecPU"))
    assert secured.component_id == secure.id
    assert report.restricted_checked[0] == "SecPU is readable by user:pu-ann (the ACL of SecPU)"
    assert report.restricted_checked[1].startswith("narrower than RootPU (group:pu-eng"), (
        report.restricted_checked
    )


async def test_an_authenticator_before_list_group_members_is_named_to_upgrade_first(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """An Authenticator of the previous release: one line saying to upgrade it first, exit 2.

    Before, the run ended as the Authenticator failing (exit 1) with
    "error: Missing content-type header": grpclib's client reads its
    server's bare UNIMPLEMENTED "Method not found" so.
    """
    bugless_stack.add_user("gm-pat", "pw-gm-pat", groups=["gm4-eng", "gm4-sec"])
    await _component(model, "RootGM4", "gm4-eng")
    await _component(model, "SecGM4", "gm4-sec")
    settings = make_settings()
    assert settings.model is not None
    ready = tmp_path / "previous-auth.json"
    process = spawn(
        "auth-previous",
        [sys.executable, str(PREVIOUS), "auth", "serve", "--port", "0", "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "previous-auth.log",
        ready_file=ready,
    )
    previous = bugless_stack.wait_started("auth", process)
    try:
        args = [
            "import", "jira", str(_jira_export(tmp_path, "GMD")),
            "--model", f"{settings.model.host}:{settings.model.port}",
            "--auth", f"127.0.0.1:{previous.port}",
            "--tls-ca", str(settings.tls_ca), "--tls-cert", str(settings.tls_cert),
            "--tls-key", str(settings.tls_key), "--state-dir", str(tmp_path / "state"),
            "--component-root", "RootGM4", "--restricted-component", "SecGM4", "--quiet",
        ]  # fmt: skip
        result = await asyncio.to_thread(
            run_bugless, args, {"BUGLESS_IMPORT_TOKEN": settings.token}
        )
    finally:
        bugless_stack.stop_service(previous)

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "error: --restricted-component: the Authenticator does not serve ListGroupMembers, so it "
        "is of a release before this import's; upgrade the Authenticator first, as "
        "docs/upgrades.md orders, then run the import again (nothing was written)"
    ]
    assert await find(model, "jira:GMD-1") == []
