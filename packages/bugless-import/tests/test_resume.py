"""An import stopped by Ctrl-C halfway resumes with no duplicates and no gaps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from import_support import find, history

from bugless_dev.stack import LocalStack
from bugless_proto import v1
from bugless_testing.program import BUGLESS_SCRIPT

ISSUES = 240


def _write_repository(root: Path) -> None:
    """A GitHub export of ISSUES issues with two comments each (documented shapes)."""
    repo = "https://api.github.com/repos/acme/resume"
    user = {"login": "resumer", "id": 9, "type": "User"}
    issues, comments = [], []
    for n in range(1, ISSUES + 1):
        issues.append(
            {
                "url": f"{repo}/issues/{n}",
                "repository_url": repo,
                "html_url": f"https://github.com/acme/resume/issues/{n}",
                "number": n,
                "title": f"Resumable issue {n}",
                "user": user,
                "labels": [],
                "state": "open",
                "locked": False,
                "assignee": None,
                "created_at": f"2022-01-01T00:{n % 60:02d}:00Z",
                "updated_at": "2022-02-01T00:00:00Z",
                "closed_at": None,
                "body": f"Body {n}",
            }
        )
        for c in (1, 2):
            comments.append(
                {
                    "issue_url": f"{repo}/issues/{n}",
                    "id": n * 10 + c,
                    "user": user,
                    "created_at": f"2022-01-0{1 + c}T00:00:00Z",
                    "body": f"Comment {c} on {n}",
                }
            )
    root.mkdir(parents=True)
    pages = [issues[i : i + 100] for i in range(0, len(issues), 100)]
    (root / "issues.json").write_text("".join(json.dumps(p) for p in pages), encoding="utf-8")
    (root / "comments.json").write_text(json.dumps(comments), encoding="utf-8")


async def _run(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        BUGLESS_SCRIPT,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_ctrl_c_then_the_same_command_imports_the_rest_exactly_once(
    bugless_stack: LocalStack, import_token: str, model: v1.ModelStub, tmp_path: Path
) -> None:
    source = tmp_path / "export"
    _write_repository(source)
    state = tmp_path / "state"
    env = {**os.environ, "BUGLESS_IMPORT_TOKEN": import_token}
    files = bugless_stack.pki.service_certificate("import")
    args = [
        "import", "github", str(source),
        "--model", f"{bugless_stack.model.host}:{bugless_stack.model.port}",
        "--auth", f"{bugless_stack.auth.host}:{bugless_stack.auth.port}",
        "--state-dir", str(state), "--concurrency", "4", "--batch-size", "10", "--quiet",
        "--tls-ca", str(bugless_stack.pki.ca_file), "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
    ]  # fmt: skip
    done = state / "github-done.jsonl"
    first = await _run(args, env)
    async with asyncio.timeout(120):
        while not done.exists() or len(done.read_text().splitlines()) < ISSUES // 4:
            await asyncio.sleep(0.05)
            assert first.returncode is None, (await first.communicate())[1].decode()
    first.send_signal(signal.SIGINT)
    _, err = await first.communicate()
    assert first.returncode == 130, err.decode()
    assert "run the same command again" in err.decode()
    halfway = len(done.read_text().splitlines())
    assert ISSUES // 4 <= halfway < ISSUES, "stopped halfway"
    # A run stopped while writing its last record (the disk full, the machine
    # down) leaves that line cut short: the next run does that issue again
    # rather than refusing to start on a JSON error.
    text = done.read_text()
    last = text.splitlines()[-1]
    torn = json.loads(last)["external_id"]
    done.write_text(text[: len(text) - 1 - len(last) // 2])  # its end and its "\n" gone
    halfway -= 1

    second = await _run(args, env)
    out, err = await second.communicate()
    assert second.returncode == 0, err.decode()
    assert (
        f"{halfway} done in an earlier run" in out.decode()
        or "done in an earlier run" in out.decode()
    )

    records = [json.loads(line) for line in done.read_text().splitlines()]
    assert sorted(r["external_id"] for r in records) == sorted(
        f"github:acme/resume#{n}" for n in range(1, ISSUES + 1)
    ), "every issue once in the progress file: no gaps, no repeats"
    for n in (1, ISSUES // 3, ISSUES // 2, ISSUES, int(torn.rsplit("#", 1)[1])):
        found = await find(model, f"github:acme/resume#{n}")
        assert len(found) == 1, f"issue {n} imported exactly once"
        entries = await history(model, found[0].id)
        assert [e.comment for e in entries] == [
            f"Body {n}",
            f"Comment 1 on {n}",
            f"Comment 2 on {n}",
        ]
    counted = await model.search_issues(
        v1.SearchIssuesRequest(
            caller=v1.Caller(user_id="t", admin=True),
            query=v1.StructuredQuery(
                filter=v1.SearchNode(
                    term=v1.SearchTerm(field=v1.SearchField.TEXT, op=v1.SearchOperator.EQ,
                                       values=[v1.SearchValue(text="Resumable")])
                )
            ),
            page=v1.PageRequest(page_size=1),
        )
    )  # fmt: skip
    assert counted.total_count == ISSUES
