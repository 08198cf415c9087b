"""What the importers' tests share besides fixtures: the fixture files, look-ups, a Redmine tree,
source files, reading back the files a run copied, the restricted tests' component and Jira
export, and the label tests' hotlists and label changes.

Kept out of ``conftest.py`` so that test modules import it by a name no other
test tree uses: pytest keeps one module named ``conftest``, so ``from conftest
import ...`` breaks as soon as two test trees run in one pytest.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bugless_core.clients import acting_as, call
from bugless_core.importer import SourceAttachment
from bugless_dev.stack import LocalStack
from bugless_import import ImportSettings
from bugless_proto import v1
from bugless_testing.program import BUGLESS_SCRIPT

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "import-test-password"
#: The GitHub token the loopback GitHub servers expect.
TOKEN = "ghp_loopback0123456789"

MakeSettings = Callable[..., ImportSettings]

ADMIN = v1.Caller(user_id="test-admin", admin=True)

#: The per-file limit of the ``small_model`` fixture's Model (conftest).
SMALL_FILE_LIMIT = 4096
#: Two source files the attachment tests copy: a text log and an image.
SAMPLE_LOG = b"T+5 no stop\n" * 20
SAMPLE_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def read_source_file(file: SourceAttachment) -> bytes:
    """A source file's whole content, as the run would stream it."""
    with file.open() as content:
        return content.read()


async def attachment_content(stack: LocalStack, attachment_id: int) -> tuple[v1.Attachment, bytes]:
    """DownloadAttachment's stream, as an admin of the stack (an assertion of its own key)."""
    attachment, data = None, bytearray()
    channel = stack.model.channel()
    try:
        with acting_as(stack.assertion_for("test-admin", permissions=["admin"])):
            async for part in v1.ModelStub(channel).download_attachment(
                v1.DownloadAttachmentRequest(caller=ADMIN, attachment_id=attachment_id)
            ):
                if part.attachment is not None:
                    attachment = part.attachment
                else:
                    data += part.chunk or b""
    finally:
        channel.close()
    assert attachment is not None
    return attachment, bytes(data)


def not_imported_files(entry: v1.HistoryEntry) -> list[str]:
    """The files ``entry`` records as not imported (its ``files_not_imported`` change)."""
    changes = [c for c in entry.changes if c.field == "files_not_imported"]
    assert all(c.field_name == "Source files not imported" for c in changes)
    return [name for c in changes for name in c.added]


async def find(model: v1.ModelStub, external_id: str) -> list[v1.Issue]:
    """The issues with this external reference (at most one, if all is well)."""
    answer = await call(
        model.search_issues,
        v1.SearchIssuesRequest(
            caller=ADMIN,
            query=v1.StructuredQuery(
                filter=v1.SearchNode(
                    term=v1.SearchTerm(
                        field=v1.SearchField.EXTERNAL_ID,
                        op=v1.SearchOperator.EQ,
                        values=[v1.SearchValue(text=external_id)],
                    )
                )
            ),
        ),
    )
    return list(answer.issues)


async def history(model: v1.ModelStub, issue_id: int) -> list[v1.HistoryEntry]:
    """Every entry of an issue."""
    answer = await call(
        model.list_history,
        v1.ListHistoryRequest(caller=ADMIN, issue_id=issue_id, page=v1.PageRequest(page_size=500)),
    )
    return list(answer.entries)


async def usernames(auth: v1.AuthenticatorStub, user_ids: list[str]) -> list[str]:
    """The usernames of user ids, in order."""
    answer = await call(auth.get_users, v1.GetUsersRequest(user_ids=sorted(set(user_ids))))
    names = {u.user_id: u.username for u in answer.users}
    return [names.get(i, f"?{i}") for i in user_ids]


def redmine_tree(directory: Path, first: int) -> Path:
    """The Redmine fixtures with issue 12 as three issues: ``first`` (closed), +1 (open), +2.

    Three issues, so that a Redmine that pages two at a time has a second
    page; numbered from ``first`` so that each test file imports its own
    issues into the session's Model (``redmine:12`` is test_redmine's).
    """
    root = directory / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    twelve = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))
    (root / "issues" / "12.json").unlink()
    subjects = (twelve["issue"]["subject"], "Ground station reboots", "Antenna drifts")
    for number, subject in enumerate(subjects, start=first):
        issue = json.loads(json.dumps(twelve))
        issue["issue"].update(id=number, subject=subject)
        for journal in issue["issue"]["journals"]:
            journal["id"] += number * 100
        if number == first + 1:
            issue["issue"].update(status={"id": 2, "name": "In Progress"}, closed_on=None)
            issue["issue"]["journals"] = issue["issue"]["journals"][:2]
        (root / "issues" / f"{number}.json").write_text(json.dumps(issue), encoding="utf-8")
    return root


async def _component(model: v1.ModelStub, path: str, *groups: str) -> v1.Component:
    """Make the component at ``path`` (its parent exists) with viewer ACL entries for ``groups``."""
    parent_path, _, name = path.rpartition(">")
    parent = 0
    if parent_path:
        found = await call(
            model.get_component, v1.GetComponentRequest(caller=ADMIN, path=parent_path)
        )
        parent = found.id
    acl = [v1.AclEntry(principal=v1.Principal(group=g), role=v1.Role.VIEWER) for g in groups]
    return await call(
        model.create_component,
        v1.CreateComponentRequest(caller=ADMIN, parent_id=parent, name=name, acl=acl),
    )


def _jira_export(tmp_path: Path, project: str) -> Path:
    """The Jira fixtures as ``project``; issue 2 behind the security level "Staff only"."""
    root = tmp_path / "jira"
    shutil.copytree(FIXTURES / "jira", root)
    for page in root.glob("*.json"):
        text = page.read_text(encoding="utf-8").replace("ROCK-", f"{project}-")
        page.write_text(text, encoding="utf-8")
    later = root / "search-0001.json"
    data = json.loads(later.read_text(encoding="utf-8"))
    (second,) = [i for i in data["issues"] if i["key"] == f"{project}-2"]
    second["fields"]["security"] = {"id": "10000", "name": "Staff only"}
    later.write_text(json.dumps(data), encoding="utf-8")
    return root


async def _hotlist_ids(model: v1.ModelStub, names: list[str]) -> dict[str, int]:
    """The ids of the hotlists named ``names`` that exist, by name (one page of 500)."""
    page = await call(
        model.list_hotlists,
        v1.ListHotlistsRequest(caller=ADMIN, page=v1.PageRequest(page_size=500)),
    )
    return {h.name: h.id for h in page.hotlists if h.name in names}


def _labels_of(entry: v1.HistoryEntry) -> list[tuple[str, list[str], list[str], str]]:
    """Each change of ``entry``: its field (a custom field by name), added, removed, new value."""
    return [
        (c.field_name or c.field, list(c.added), list(c.removed), c.new_value)
        for c in entry.changes
    ]


async def _bugless(*args: str, token: str) -> tuple[int, str, str]:
    """Run ``bugless args`` with ``token`` as its import token: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env={**os.environ, "BUGLESS_IMPORT_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _stack_args(stack: LocalStack, state: Path) -> list[str]:
    """The import command's options for ``stack`` (its import certificate) and ``state``."""
    files = stack.pki.service_certificate("import")
    return [
        "--model", f"{stack.model.host}:{stack.model.port}",
        "--auth", f"{stack.auth.host}:{stack.auth.port}",
        "--state-dir", str(state),
        "--tls-ca", str(stack.pki.ca_file), "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
    ]  # fmt: skip
