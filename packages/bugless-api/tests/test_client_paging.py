"""A script pages through a thousand-issue search with the client's ``iter_issues``.

The common job of a bot (a nightly report, a bulk triage) over real gRPC and
TLS: every issue comes once, in the search's order, across pages; and with
``read_mask`` each page carries only the fields named, as ``search_issues``
does, so a report of titles reads no descriptions or cc lists.
"""

from __future__ import annotations

import asyncio
import secrets

from api_support import ConnectAs

from bugless_proto import v1

ISSUES = 1_000


async def test_iter_issues_pages_through_a_thousand_issues_with_a_read_mask(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component = await robot.create_component(f"Paging-{secrets.token_hex(3)}")
    created: list[int] = []
    for start in range(0, ISSUES, 100):  # concurrent creates: one BatchCreateIssues each
        batch = await asyncio.gather(
            *(
                robot.create_issue(
                    f"report {n:04d}", component.id, description="long text", cc=["boss"]
                )
                for n in range(start, start + 100)
            )
        )
        created += [issue.id for issue in batch]

    query = f"c:{component.id} sort:id"
    listed = [issue async for issue in robot.iter_issues(query, page_size=100, read_mask=["title"])]

    assert [issue.id for issue in listed] == sorted(created)
    assert {issue.title for issue in listed} == {f"report {n:04d}" for n in range(ISSUES)}
    assert all((i.description, i.cc, i.status) == ("", [], v1.Status.UNSPECIFIED) for i in listed)
    some = [issue async for issue in robot.iter_issues(query, limit=250, page_size=100)]
    assert [issue.id for issue in some] == sorted(created)[:250]
    assert all(issue.description == "long text" for issue in some)
