"""The rolling upgrade of docs/upgrades.md, with the previous schema's code really running.

docs/upgrades.md promises that when the Model's migrations run (the chart's
hook, with the new Model image) while replicas of the previous release still
serve, those old replicas "serve on and stay ready", and that a migration
which only adds to the schema leaves their reads and writes working. This
drill holds that promise against the repository's own history: the previous
release is the code just before the newest Model migration was added (found
with ``git log``, extracted with ``git archive``, run from the same virtual
environment by putting its ``src`` folders first on ``PYTHONPATH``, as
``bugless-web``'s rollout test runs its second build). Its Authenticator,
Model and web serve a tracker on a schema the previous code migrated; then the
current code's ``bugless model migrate`` applies the newest migration under
them; the old Model must stay SERVING (and log the newer schema) and the old
web ready, and through them people must still read (issue page, search,
attachment download) and write (a comment by the web's form, an attachment by
the web, an issue and a comment by the Model's API). Then the guide's next
steps: a current Authenticator starts with ``--migrate`` and migrates its own
schema while the old one serves on (a sign-in through the old web still
works); a current Model replica reads the history and search the old replicas
wrote; a current web serves the old web's session, page and file.

What the drill does not check is what the guide already lists as limits: rows
only the new code keeps (mention keys, folded names) written by an old replica
during the window.

It needs the repository's history (a clone, as CI's checkout is; not a
shallow copy or an unpacked archive): without it, it fails and says so. The
previous code runs on this checkout's third-party libraries, as an image of
it would not; a library it imports and this checkout dropped makes the drill
fail at the previous code's start, naming the import.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
from backup_drill import PAGE_TOKEN_SECRET, PASSWORD, sign_in
from upgrade_support import AUTH_SERVICE, MODEL_SERVICE, previous_release, schema_version

from bugless_core.clients import acting_as
from bugless_core.search.build import term
from bugless_core.service_address import ServiceAddress
from bugless_dev.pki import LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_dev.processes import check_grpc_health, clean_environment
from bugless_dev.stack import LocalStack, RunningService, StackConfig
from bugless_proto import v1
from bugless_testing.health import health_until

BEFORE = b"written by the previous release before the migration\n" * 40
DURING = b"written by the previous release during the window\n" * 40


def edit_form(html: str) -> dict[str, str]:
    """The issue page's edit form as a browser submits it untouched (inputs and selects)."""
    form = html.split('id="issue-form"', 1)[1].split("</form>", 1)[0]
    values: dict[str, str] = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form):
        values.setdefault(name, value)
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        values[name] = chosen.group(1) if chosen else ""
    values.pop("hotlist_remove", None)
    return values


async def comment_by_form(browser: httpx.AsyncClient, issue_id: int, text: str) -> None:
    """A comment through the issue page's form, the way a person adds one."""
    page = await browser.get(f"/issues/{issue_id}")
    assert page.status_code == 200, page.text[:500]
    saved = await browser.post(
        f"/issues/{issue_id}", data={**edit_form(page.text), "comment": text}
    )
    assert saved.status_code == 303, saved.text[:500]


async def upload_by_web(
    browser: httpx.AsyncClient, csrf: str, issue_id: int, name: str, content: bytes
) -> str:
    """Attach ``content`` through the page's upload endpoint; returns its download URL."""
    uploaded = await browser.post(
        f"/issues/{issue_id}/attachments",
        content=content,
        headers={"x-csrf-token": csrf, "x-file-name": quote(name), "content-type": "text/plain"},
    )
    assert uploaded.status_code == 201, uploaded.text[:500]
    url = uploaded.json()["url"]
    assert isinstance(url, str)
    return url


async def said_in_log(
    service: RunningService,
    words: str,
    *,
    probe: tuple[ServiceAddress, str] | None = None,
    seconds: float = 15.0,
) -> None:
    """Wait until ``service``'s log holds ``words``.

    A readiness check logs as it runs, and it runs only when asked (a server
    caches its answer for about 2 s): ``probe`` (an address and a service
    name) is asked for its health at each look, as a kubelet's readiness
    probe would. Without it, a SERVING answer cached from a check before the
    migrate ended satisfies :func:`health_until`, and nothing may ask again
    within the wait (the likely cause of a 15 s timeout in the checker's CI
    run; it passes here each time).
    """
    async with asyncio.timeout(seconds):
        while words not in service.log.read_text():
            if probe is not None:
                await check_grpc_health(*probe)
            await asyncio.sleep(0.2)


def found_ids(page: str, issue_ids: list[int]) -> list[int]:
    """Which of ``issue_ids`` a search results page links to."""
    return [i for i in issue_ids if f'href="/issues/{i}"' in page]


def comments(entries: list[v1.HistoryEntry]) -> list[tuple[int, str, list[str]]]:
    """What both releases must agree on in a history: versions, comments, files attached."""
    return [(e.version, e.comment, [a.name for a in e.attachments]) for e in entries]


async def history(model: v1.ModelStub, caller: v1.Caller, issue_id: int) -> list[v1.HistoryEntry]:
    request = v1.ListHistoryRequest(
        caller=caller, issue_id=issue_id, page=v1.PageRequest(page_size=100)
    )
    return list((await model.list_history(request)).entries)


async def test_old_replicas_read_and_write_while_the_current_code_migrates_under_them(
    postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    release = previous_release(tmp_path / "release")
    assert release.added, f"{release.commit} is not before a migration"
    pki = LocalPki.open(tmp_path / "pki")
    config = StackConfig(
        directory=tmp_path / "current",
        pki=pki,
        model_database_url=postgres_server.create_database("upgrade_model"),
        auth_database_url=postgres_server.create_database("upgrade_auth"),
        page_token_secret=PAGE_TOKEN_SECRET,
        session_key="live-upgrade-drill-session-key-0123456789abcdef",
        notify_secret_key="live-upgrade-drill-notify-key-0123456789abcdef",
    )
    current = LocalStack(config)
    previous = LocalStack(
        replace(
            config,
            directory=tmp_path / "previous",
            token_key_file=Path(current.env["BUGLESS_AUTH_TOKEN_KEY_FILES"]),
            base_env={**clean_environment(), "PYTHONPATH": release.python_path},
        )
    )
    try:
        await asyncio.to_thread(previous.migrate)
        old_version = await schema_version(config.model_database_url)
        await asyncio.to_thread(previous.start_backends)
        ann = await asyncio.to_thread(previous.add_user, "ann", PASSWORD, admin=True)
        caller = v1.Caller(user_id=ann["user_id"], admin=True)
        web: RunningService = await asyncio.to_thread(previous.start_web)
        assert web.url is not None
        model = previous.acting_model(v1.ModelStub(previous.model.channel()))
        component = await model.create_component(
            v1.CreateComponentRequest(caller=caller, name="Upgrades")
        )
        fields = v1.IssueFields(title="Rolling upgrade of the tracker", component_id=component.id)
        issue = await model.create_issue(v1.CreateIssueRequest(caller=caller, fields=fields))
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as browser:
            csrf = await sign_in(browser, "ann")
            await comment_by_form(browser, issue.id, "Seen before the upgrade.")
            before_url = await upload_by_web(browser, csrf, issue.id, "before.log", BEFORE)

            # The chart's hook: the current code's migrate, with the old replicas serving.
            await asyncio.to_thread(current.run_bugless, "model", "migrate")
            assert await schema_version(config.model_database_url) == old_version + len(
                release.added
            ), f"the current code applies {release.added} over {release.commit}"

            # The window: the old Model stays ready, the old web too, and both serve.
            await health_until(previous.model, MODEL_SERVICE, "SERVING")
            await said_in_log(
                previous.first("model"),
                f"the database schema is now at version {old_version + len(release.added)}, "
                f"newer than the {old_version} this bugless-model-postgres knows",
                probe=(previous.model, MODEL_SERVICE),
            )
            assert (await browser.get("/readyz")).status_code == 200
            page = await browser.get(f"/issues/{issue.id}")
            assert page.status_code == 200
            assert "Seen before the upgrade." in page.text
            assert "before.log" in page.text
            assert (await browser.get(before_url)).content == BEFORE
            await comment_by_form(browser, issue.id, "Written in the upgrade window.")
            during_url = await upload_by_web(browser, csrf, issue.id, "during.log", DURING)
            assert (await browser.get(during_url)).content == DURING
            created = await model.create_issue(
                v1.CreateIssueRequest(
                    caller=caller,
                    fields=v1.IssueFields(
                        title="Filed in the upgrade window", component_id=component.id
                    ),
                )
            )
            await model.change_issue(
                v1.ChangeIssueRequest(
                    caller=caller,
                    issue_id=created.id,
                    expected_version=created.version,
                    comment="The window comment, by the old Model's API.",
                )
            )
            results = await browser.get("/search", params={"q": "window"})
            assert results.status_code == 200
            assert found_ids(results.text, [issue.id, created.id]) == [issue.id, created.id]
            session = httpx.Cookies(browser.cookies)
        await health_until(previous.model, MODEL_SERVICE, "SERVING")
        written = {i: await history(model, caller, i) for i in (issue.id, created.id)}
        assert [len(entries) for entries in written.values()] == [5, 2]

        # The Authenticator's step: its first current replica migrates its own
        # schema (``--migrate``, as the chart starts it) while the old one serves on.
        auth_version = await schema_version(config.auth_database_url, "bugless_auth")
        await asyncio.to_thread(current.start_auth, "--migrate")
        assert await schema_version(config.auth_database_url, "bugless_auth") == auth_version + len(
            release.auth_added
        ), f"the current Authenticator applies {release.auth_added} over {release.commit}"
        await health_until(previous.auth, AUTH_SERVICE, "SERVING")
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as browser:
            await sign_in(browser, "ann")  # the old web, through the old Authenticator

        # The Model's step, then the web's: current replicas read what the old ones wrote.
        await asyncio.to_thread(current.start_model)
        channel = current.model.channel()
        try:
            newer = v1.ModelStub(channel)
            with acting_as(current.assertion_for(caller.user_id, permissions=["admin"])):
                for issue_id, entries in written.items():
                    assert comments(await history(newer, caller, issue_id)) == comments(entries)
                query = v1.StructuredQuery(
                    filter=term(v1.SearchField.TEXT, v1.SearchOperator.EQ, "window")
                )
                found = await newer.search_issues(
                    v1.SearchIssuesRequest(caller=caller, query=query)
                )
                assert sorted(i.id for i in found.issues) == [issue.id, created.id]
        finally:
            channel.close()
        newer_web = await asyncio.to_thread(current.start_web)
        assert newer_web.url is not None
        async with httpx.AsyncClient(
            base_url=newer_web.url, cookies=session, timeout=60
        ) as browser:
            page = await browser.get(f"/issues/{issue.id}")
            assert page.status_code == 200
            assert 'action="/signout"' in page.text, "the old web's session goes on"
            assert "Written in the upgrade window." in page.text
            assert (await browser.get(during_url)).content == DURING
    finally:
        await asyncio.to_thread(current.stop)
        await asyncio.to_thread(previous.stop)
