"""A small, fixed set of issues that the search contracts query.

Built once per contract class (searches only read it), under a root
component of its own, so every query can be limited to that subtree and
compared with an expected set computed here from the issues as read back.
"""

from __future__ import annotations

import dataclasses

from grpclib.client import Channel

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    change,
    get_issue,
    make_component,
    make_hotlist,
    make_issue,
    unique,
    user_entry,
)


@dataclasses.dataclass
class SearchWorld:
    """The issues of one search fixture, keyed by a short name.

    Attributes:
        root: Root component; every query is ANDed with its subtree.
        child, grandchild, sibling, secret: Components below it (``secret`` is
            visible only to ``ua`` and admins).
        hotlist: A public hotlist holding some of the issues.
        ua, ub, uc: Callers with user ids of their own.
        issues: Issue by name, as read back after the fixture was built.
    """

    root: v1.Component
    child: v1.Component
    grandchild: v1.Component
    sibling: v1.Component
    secret: v1.Component
    hotlist: v1.Hotlist
    ua: v1.Caller
    ub: v1.Caller
    uc: v1.Caller
    issues: dict[str, v1.Issue]

    def id(self, name: str) -> int:
        """The id of the issue called ``name``."""
        return self.issues[name].id

    def names(self, ids: list[int]) -> list[str]:
        """Names of the given issue ids (in the same order)."""
        by_id = {issue.id: name for name, issue in self.issues.items()}
        return [by_id.get(i, f"<foreign issue {i}>") for i in ids]

    def visible_to_ub(self) -> set[str]:
        """Names of the issues ``ub`` may view (all but the secret one)."""
        return {n for n, i in self.issues.items() if i.component_id != self.secret.id}


async def build_search_world(channel: Channel) -> SearchWorld:
    """Create the components, hotlist and issues, then read them back."""
    model = v1.ModelStub(channel)
    ua, ub, uc = (v1.Caller(user_id=unique(n)) for n in ("ua", "ub", "uc"))
    root = await make_component(model, name=unique("Search"))
    child = await make_component(model, parent_id=root.id, name="Child")
    grandchild = await make_component(model, parent_id=child.id, name="Grandchild")
    sibling = await make_component(model, parent_id=root.id, name="Sibling")
    secret = await make_component(
        model, parent_id=root.id, name="Secret", acl=[user_entry(ua.user_id, v1.Role.ADMIN)]
    )
    hot = await make_hotlist(model, caller=ua)
    issues: dict[str, v1.Issue] = {}
    issues["disk"] = await make_issue(
        model,
        root.id,
        caller=ua,
        title="Disk quota exceeded on storage node",
        description="The storage node ran out of disk space during compaction.",
        priority=v1.Priority.P0,
        severity=v1.Severity.S1,
        cc=[ub.user_id],
    )
    issues["login"] = await make_issue(
        model,
        child.id,
        caller=ub,
        title="Login page renders slowly",
        assignee=ub.user_id,
        verifier=uc.user_id,
        priority=v1.Priority.P1,
        issue_type=v1.IssueType.FEATURE_REQUEST,
        cc=[ua.user_id, uc.user_id],
    )
    issues["crash"] = await make_issue(
        model,
        grandchild.id,
        caller=ua,
        title="Crash when uploading large files",
        assignee=ua.user_id,
        status=v1.Status.FIXED,
        severity=v1.Severity.S0,
    )
    issues["typo"] = await make_issue(
        model,
        sibling.id,
        caller=uc,
        title="Typo in settings menu",
        assignee=uc.user_id,
        status=v1.Status.ACCEPTED,
        priority=v1.Priority.P3,
        severity=v1.Severity.S3,
        issue_type=v1.IssueType.INTERNAL_CLEANUP,
        blocking_ids=[issues["disk"].id],
    )
    issues["quota"] = await make_issue(
        model,
        child.id,
        caller=ua,
        title="Quota dashboard missing storage graphs",
        status=v1.Status.WONT_FIX_OBSOLETE,
        priority=v1.Priority.P4,
        severity=v1.Severity.S4,
        issue_type=v1.IssueType.TASK,
        parent_id=issues["disk"].id,
    )
    issues["graphs"] = await make_issue(
        model,
        root.id,
        caller=ub,
        title="Storage graphs absent from dashboard",
        status=v1.Status.DUPLICATE,
        duplicate_of_id=issues["quota"].id,
    )
    issues["leak"] = await make_issue(
        model,
        grandchild.id,
        caller=ua,
        title="Upload handler leaks memory",
        priority=v1.Priority.P1,
        severity=v1.Severity.S1,
        issue_type=v1.IssueType.VULNERABILITY,
        verifier=ua.user_id,
        parent_id=issues["disk"].id,
        blocked_by_ids=[issues["crash"].id],
        hotlist_ids=[hot.id],
    )
    issues["secret"] = await make_issue(
        model,
        secret.id,
        caller=ua,
        title="Embargoed vulnerability report",
        priority=v1.Priority.P0,
        issue_type=v1.IssueType.VULNERABILITY,
        cc=[ub.user_id],
    )
    issues["welcome"] = await make_issue(
        model,
        sibling.id,
        caller=ub,
        title="Welcome email never arrives",
        description="Users report the welcome email lands nowhere.",
        issue_type=v1.IssueType.CUSTOMER_ISSUE,
        hotlist_ids=[],
    )
    await model.add_hotlist_items(
        v1.AddHotlistItemsRequest(
            caller=ua,
            hotlist_id=hot.id,
            issue_ids=[issues["graphs"].id, issues["welcome"].id],
            position=-1,
        )
    )
    crash = await get_issue(model, issues["crash"].id)
    await change(
        model, crash, comment="Root cause: buffer overflow in the upload handler.", caller=ADMIN
    )
    login = await get_issue(model, issues["login"].id)
    await change(model, login, comment="Profiling shows slow template rendering.", caller=ADMIN)
    fresh = {name: await get_issue(model, issue.id) for name, issue in issues.items()}
    return SearchWorld(
        root=root,
        child=child,
        grandchild=grandchild,
        sibling=sibling,
        secret=secret,
        hotlist=hot,
        ua=ua,
        ub=ub,
        uc=uc,
        issues=fresh,
    )
