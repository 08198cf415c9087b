"""Redmine REST JSON (issue with journals, id lists) into the real Model.

From files, and over HTTP from a loopback server (``redmine_server.py``) that
answers Redmine's REST API from the same files: both must read the same
issues and people.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from import_support import (
    FIXTURES,
    MakeSettings,
    _bugless,
    _stack_args,
    find,
    history,
    redmine_tree,
    usernames,
)
from redmine_server import PROJECT, Redmine, serve

from bugless_core.cli import EXIT_NOT_FOUND
from bugless_core.clients import call
from bugless_core.errors import FailedPrecondition, InvalidArgument, Unauthenticated, Unavailable
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1
from bugless_testing.ports import refused_port
from bugless_testing.program import BUGLESS_SCRIPT

KEY = "0123456789abcdef0123456789abcdef01234567"
URL = "https://redmine.example.org"


async def test_journals_become_history_with_names_for_ids(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    importer = RedmineImporter(str(FIXTURES / "redmine"), {"url": "https://redmine.example.org"})
    report = await run_import(importer, make_settings())
    assert report.created == 1
    (issue,) = await find(model, "redmine:12")
    assert issue.status is v1.Status.FIXED
    assert issue.priority is v1.Priority.P1
    assert issue.closed_at == datetime(2019, 4, 5, 9, tzinfo=UTC)
    component = await call(
        model.get_component,
        v1.GetComponentRequest(
            caller=v1.Caller(user_id="t", admin=True), component_id=issue.component_id
        ),
    )
    assert component.path == "Imported>Ground"
    reporter, assignee, watcher = await usernames(auth, [issue.reporter, issue.assignee, *issue.cc])
    assert (reporter, assignee, watcher) == ("rex@redmine", "ann", "ann")
    entries = await history(model, issue.id)
    changes = [[(c.field, c.old_value, c.new_value) for c in e.changes] for e in entries[1:]]
    first_component = next(c for c in entries[0].changes if c.field == "component_id")
    assert changes[0][0][0] == "component_id"
    assert changes[0][0][1] == first_component.new_value, "created in Telemetry, then moved"
    assert changes[1] == [("status", "NEW", "ACCEPTED"), ("priority", "P2", "P1")]
    assert changes[2] == [("status", "ACCEPTED", "FIXED")]
    assert [e.comment for e in entries[1:]] == ["", "Looking.", "Fixed the buffer."]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Three issues' REST JSON (the fixtures, issue 12 made three: 8012-8014)."""
    return redmine_tree(tmp_path, 8012)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The API key, in a file as ``--option api-key-file`` wants it."""
    path = tmp_path / "redmine-key"
    path.write_text(KEY + "\n", encoding="utf-8")
    return path


@pytest.fixture
def redmine(tree: Path) -> Iterator[Redmine]:
    """The tree served as Redmine's REST API, two objects per page."""
    with serve(Redmine(tree, KEY, cap=2)) as server:
        yield server


def _options(key_file: Path, **more: str) -> dict[str, str]:
    return {"url": URL, "api-key-file": str(key_file), "project": PROJECT, **more}


def test_rest_reads_what_the_files_hold_page_by_page(
    redmine: Redmine, tree: Path, key_file: Path
) -> None:
    files = RedmineImporter(str(tree), {"url": URL})
    rest = RedmineImporter(redmine.url, _options(key_file))
    assert list(rest.people()) == list(files.people())
    rest_issues = list(rest.issues())
    assert rest_issues == list(files.issues())
    assert [i.key for i in rest_issues] == ["8012", "8013", "8014"], "open and closed issues"
    listing = [r for r in redmine.requests if r.startswith("/issues.json")]
    assert len(listing) == 2, "three issues, two a page: two pages"
    assert "offset=2" in listing[1]
    assert f"project_id={PROJECT}" in listing[0]
    assert "status_id=*" in listing[0]
    reads = [r for r in redmine.requests if r.startswith("/issues/")]
    assert all("include=journals,watchers" in r for r in reads)


def test_without_the_users_list_people_are_named_by_the_issues(tree: Path, key_file: Path) -> None:
    files = RedmineImporter(str(tree), {"url": URL})
    with serve(Redmine(tree, KEY, users_forbidden=True)) as server:
        rest = RedmineImporter(server.url, _options(key_file))
        people = list(rest.people())
        issues = list(rest.issues())
    assert issues == list(files.issues())
    assert {p.key: p.display_name for p in people} == {"5": "Ann R", "6": "Rex Redmine"}
    assert not any(p.username or p.email for p in people), "403: no logins, no e-mails"
    assert sum(r.startswith("/issues.json") for r in server.requests) == 2, "issues read once"


def test_a_wrong_or_missing_key_is_refused_by_name(
    redmine: Redmine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "wrong-key"
    wrong.write_text("not-the-key", encoding="utf-8")
    with pytest.raises(Unauthenticated, match="API key was refused"):
        RedmineImporter(redmine.url, {"api-key-file": str(wrong)})
    monkeypatch.delenv("REDMINE_API_KEY", raising=False)
    with pytest.raises(Unauthenticated, match="needs an API key"):
        RedmineImporter(redmine.url, {})
    monkeypatch.setenv("REDMINE_API_KEY", KEY)
    assert len(list(RedmineImporter(redmine.url, {"project": PROJECT}).issues())) == 3


def test_an_unreachable_redmine_or_one_that_answers_html_fails_clearly(
    redmine: Redmine,
) -> None:
    with refused_port() as port:
        closed = f"http://127.0.0.1:{port}/"
        with pytest.raises(Unavailable, match=f"cannot reach Redmine at {closed}"):
            RedmineImporter(closed, {})
    with pytest.raises(InvalidArgument, match="not JSON"):
        RedmineImporter(redmine.url + "html/", {})


async def test_the_command_imports_a_live_redmine_with_a_key_file(
    redmine: Redmine,
    key_file: Path,
    tmp_path: Path,
    *,
    bugless_stack: LocalStack,
    import_token: str,
    model: v1.ModelStub,
) -> None:
    wrong = tmp_path / "wrong-key"
    wrong.write_text("not-the-key", encoding="utf-8")
    refused = tmp_path / "refused"
    code, _, err = await _bugless(
        "import", "redmine", redmine.url, "--option", f"api-key-file={wrong}",
        *_stack_args(bugless_stack, refused), token=import_token,
    )  # fmt: skip
    assert code != 0
    assert "API key was refused" in err
    assert not (refused / "redmine-done.jsonl").exists(), "nothing imported"

    state = tmp_path / "state"
    code, out, err = await _bugless(
        "import", "redmine", redmine.url, "--option", f"api-key-file={key_file}",
        "--option", f"project={PROJECT}", *_stack_args(bugless_stack, state), token=import_token,
    )  # fmt: skip
    assert code == 0, err
    assert "importing redmine" not in err, "no terminal: no progress bar"
    assert KEY not in out + err
    (issue,) = await find(model, "redmine:8013")
    assert issue.title == "Ground station reboots"
    assert issue.status is v1.Status.ACCEPTED
    (closed,) = await find(model, "redmine:8014")
    assert closed.status is v1.Status.FIXED
    # No --new-url: a CSV of /issues/N a web server on the old host cannot use
    # is not written, and the output (and the report file) say how to get one.
    assert not (state / "redmine-redirects.csv").exists()
    assert "report: " in out
    assert "WARNING: no --new-url: redmine-redirects.csv is not written" in out
    assert "no --new-url" not in err, "said once, in the report"
    report = (state / "redmine-report.txt").read_text(encoding="utf-8")
    assert "run the same command again with --new-url" in report

    code, out, err = await _bugless(
        "import", "redmine", redmine.url, "--option", f"api-key-file={key_file}",
        "--option", f"project={PROJECT}", *_stack_args(bugless_stack, state),
        "--new-url", "https://bugs.example.org/", token=import_token,
    )  # fmt: skip
    assert code == 0, err
    assert "report and redirects CSV: " in out
    assert "WARNING" not in out + err
    redirects = (state / "redmine-redirects.csv").read_text(encoding="utf-8")
    assert f"{redmine.url}issues/8013,https://bugs.example.org/issues/{issue.id}," in redirects, (
        "the REST base is the default url; every issue done so far, with absolute new URLs"
    )
    assert f"{redmine.url}issues/8014,https://bugs.example.org/issues/{closed.id}," in redirects

    code, _, err = await _bugless(
        "import", "redmine", redmine.url, *_stack_args(bugless_stack, state),
        "--new-url", "bugs.example.org", token=import_token,
    )  # fmt: skip
    assert code == 2, err
    assert "--new-url 'bugs.example.org': give the bugless web UI's base URL" in err


def test_a_redmine_failing_for_now_is_asked_again_and_reads_the_same(
    tree: Path, key_file: Path
) -> None:
    files = RedmineImporter(str(tree), {"url": URL})
    failing = Redmine(
        tree,
        KEY,
        failures={
            "/issues.json": [503, 2],
            "/issues/8013.json": [502, 1],
            "/trackers.json": [429, 1],
        },
    )
    with serve(failing) as server:
        rest = RedmineImporter(server.url, _options(key_file))
        issues = list(rest.issues())
    assert issues == list(files.issues())
    assert rest.skipped == []
    asked = [r.split("?")[0] for r in server.requests]
    assert asked.count("/trackers.json") == 2, "429 once, then answered"
    assert asked.count("/issues/8013.json") == 2, "502 once, then answered"
    assert asked.count("/issues.json") == 2 + 2, "503 twice, then both pages"


def test_a_redmine_that_keeps_failing_stops_the_run_after_the_retries(
    tree: Path, key_file: Path
) -> None:
    with serve(Redmine(tree, KEY, failures={"/issues.json": [503, 100]})) as server:
        rest = RedmineImporter(server.url, _options(key_file, retries="2"))
        with pytest.raises(
            FailedPrecondition, match=r"answered 503 for .*issues\.json.*3 attempts"
        ):
            list(rest.issues())
        assert sum(r.startswith("/issues.json") for r in server.requests) == 3
        once = RedmineImporter(server.url, _options(key_file, retries="0"))
        with pytest.raises(FailedPrecondition, match="answered 503"):
            list(once.issues())
        assert sum(r.startswith("/issues.json") for r in server.requests) == 4, "no retry"
    with pytest.raises(InvalidArgument, match="retries='many': give a whole number"):
        RedmineImporter(server.url, _options(key_file, retries="many"))


async def test_an_issue_deleted_between_listing_and_reading_is_skipped_and_reported(
    tmp_path: Path, key_file: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    tree = redmine_tree(tmp_path, 8112)
    with serve(Redmine(tree, KEY, gone={8113})) as server:
        importer = RedmineImporter(server.url, _options(key_file))
        report = await run_import(importer, make_settings())
    assert report.created == 2
    assert report.skipped == ["#8113: listed, then gone (404) when read"]
    assert "skipped, gone from the source while reading: 1\n    #8113: listed" in report.render()
    assert [i.title for i in await find(model, "redmine:8112")] == ["Telemetry drops packets"]
    assert await find(model, "redmine:8113") == []
    assert len(await find(model, "redmine:8114")) == 1


def test_a_location_the_source_answers_404_for_exits_3_naming_it(
    redmine: Redmine, key_file: Path, tmp_path: Path
) -> None:
    """An error the command lets escape exits by the documented table, not always 1.

    The importer's NotFound reaches the root command's handler, which exited 1
    for every bugless error (the status of a failed service): a script could
    not tell a wrong location from an outage. Nothing is written.
    """
    wrong = redmine.url + "no-such-redmine/"
    state = tmp_path / "state"
    done = subprocess.run(
        [
            BUGLESS_SCRIPT, "import", "redmine", wrong, "--dry-run", "--state-dir", str(state),
            "--option", f"api-key-file={key_file}", "--option", f"project={PROJECT}",
        ],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert f"error: Redmine answered 404 for {wrong}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (state / "redmine-done.jsonl").exists()
