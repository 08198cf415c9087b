"""``bugless import`` stopped by the Model refusing one issue exits 1, whatever the refusal.

docs/cli.md's 3 and 4 are of the run's own input: a source that answers
404, a conflict. An issue the Model refuses on the way is a service refusing
the request, 1: here the hotlist a label maps to (found or made as the run
began) is deleted while the run reads the issue's pasted file, and the Model
answers NOT_FOUND for the hotlist, which the root command's handler passed
on as 3, as if the source were not there. What landed before is kept, and
the message says where and that the same command resumes. A GitHub files
tree, a loopback GitHub host serving the pasted file, the real Model and
Authenticator, the command as an operator runs it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

from github_server import GitHubHost, serve
from import_support import ADMIN, FIXTURES, TOKEN, _bugless, _stack_args, find

from bugless_core.cli import EXIT_ERROR
from bugless_dev.stack import LocalStack
from bugless_import.sources.github import read_pages
from bugless_proto import v1


async def _delete_hotlist(stack: LocalStack, name: str) -> None:
    """Delete the hotlist called ``name``, as an administrator would while the run goes on."""
    channel = stack.model.channel()
    try:
        model = stack.acting_model(v1.ModelStub(channel), as_requested=True)
        listed = await model.list_hotlists(
            v1.ListHotlistsRequest(caller=ADMIN, page=v1.PageRequest(page_size=500))
        )
        (hotlist,) = [h for h in listed.hotlists if h.name == name]
        await model.delete_hotlist(
            v1.DeleteHotlistRequest(
                caller=ADMIN, hotlist_id=hotlist.id, expected_version=hotlist.version
            )
        )
    finally:
        channel.close()


async def test_an_issue_the_model_refuses_stops_the_run_with_1_naming_it(
    tmp_path: Path, bugless_stack: LocalStack, import_token: str, model: v1.ModelStub
) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"Regressions {tag}"
    # A repository of its own: the session's Model holds test_github's acme/rocket.
    repository = f"acme/rocket-{tag}"
    log = f"/{repository}/files/9001/launch.log"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(f'[labels]\nregression = "hotlist:{name}"\n', encoding="utf-8")
    token_file = tmp_path / "github-token"
    token_file.write_text(TOKEN, encoding="utf-8")
    deleted: list[str] = []

    def delete_the_hotlist(path: str) -> None:
        if not deleted:
            asyncio.run(_delete_hotlist(bugless_stack, name))
            deleted.append(path)

    host = GitHubHost(TOKEN, files={log: b"T-0 stall\n"}, before_file=delete_the_hotlist)
    with serve(host) as server:
        tree = tmp_path / "github"
        shutil.copytree(FIXTURES / "github", tree)
        for file in (tree / "issues.json", tree / "comments.json"):
            text = file.read_text(encoding="utf-8")
            file.write_text(text.replace("acme/rocket", repository), encoding="utf-8")
        issues = read_pages(tree / "issues.json")
        for issue in issues:
            issue["html_url"] = issue["html_url"].replace("https://github.com/", server.url)
        issues[0]["body"] += f"\n\n[launch.log]({server.url}{log.removeprefix('/')})"
        (tree / "issues.json").write_text(json.dumps(issues), encoding="utf-8")
        state = tmp_path / "state"
        status, _, err = await _bugless(
            "import", "github", str(tree), "--mapping", str(mapping),
            "--option", f"token-file={token_file}", *_stack_args(bugless_stack, state),
            token=import_token,
        )  # fmt: skip
    assert deleted == [log], "the hotlist went while the run read the issue's file"
    assert status == EXIT_ERROR, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-2].startswith(f"error: github:{repository}#1: ")
    assert "not found" in lines[-2]
    assert lines[-1] == (
        f"stopped at github:{repository}#1: what was imported is kept in {state}; "
        "run the same command again once it is fixed"
    )
    assert await find(model, f"github:{repository}#1") == []
