"""The API's issue, history, change and attachment replies in wire form: the old path's bytes.

Each reply :mod:`bugless_api._wire_issues` sends as upb's bytes is compared
with what the betterproto2 round trip the gateway used before
(decode, :class:`UserRefs`, ``to_usernames``, encode) makes of the *same*
Model reply: the Model's bytes are fetched once over real gRPC (a change
cannot be made twice) and handed to both paths. The data is real: the
stack's Model on PostgreSQL, its Authenticator naming the bots, people in
every field that holds them, USER custom values, an id the Authenticator
does not know, edited and redacted comments, attachments (uploaded, listed,
read, deleted), single reads and creates, empty pages and page tokens. Each
reply is also given to both paths with an unknown field upb refuses.
Through the API itself, replies name people by username and errors are
those of the Model call.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from api_support import UPB_REFUSES, Bots, ConnectAs, signed_in

from bugless_api import _wire_issues as named
from bugless_api._users import UserDirectory, UserRefs
from bugless_core.clients import acting_as, call
from bugless_core.errors import BuglessError, Conflict, NotFound, PermissionDenied
from bugless_core.search.build import term
from bugless_proto import v1, wire
from bugless_proto.google.protobuf import FieldMask

#: An id no Authenticator minted: it stays an id on both paths.
_GONE = "u_gone_" + secrets.token_hex(4)


class _Raw:
    """The reply type that keeps the Model's bytes (the codec calls ``FromString``)."""

    @staticmethod
    def FromString(data: bytes) -> bytes:  # noqa: N802 - protobuf's name, called by the codec
        return data


def _old_issues(refs: UserRefs, reply: Any) -> None:
    refs.issues(reply.issues)


def _old_entries(refs: UserRefs, reply: Any) -> None:
    for index, entry in enumerate(reply.entries):
        refs.entry(entry, f"entries[{index}]")


def _old_change(refs: UserRefs, reply: Any) -> None:
    refs.issue(reply.issue)
    refs.entry(reply.entry)


def _old_issue(refs: UserRefs, reply: Any) -> None:
    refs.issue(reply)


def _old_attachment(refs: UserRefs, reply: Any) -> None:
    refs.attachment(reply)


def _old_attachments(refs: UserRefs, reply: Any) -> None:
    for index, attachment in enumerate(reply.attachments):
        refs.attachment(attachment, f"attachments[{index}]")


def _old_upload(refs: UserRefs, reply: Any) -> None:
    refs.attachment(reply.attachment)
    _old_change(refs, reply)


def _old_results(refs: UserRefs, reply: Any) -> None:
    for index, result in enumerate(reply.results):
        refs.issue(result.issue, f"results[{index}].issue")


@dataclass
class _Paths:
    """The Model as the gateway calls it, as one bot; both ways of naming its replies."""

    model: v1.ModelStub
    users: UserDirectory
    assertion: str
    caller: v1.Caller
    compared: int = 0

    async def both(
        self,
        reply: named.NamedReply[Any],
        request: betterproto2.Message,
        old_walk: Callable[[UserRefs, Any], None],
    ) -> Any:
        """Compare the two paths on the Model's reply to ``request``; the new path's reply."""
        request.caller = self.caller  # type: ignore[attr-defined]  # every request has one
        with acting_as(self.assertion):
            send: Any = self.model._unary_unary
            data: bytes = await call(send, reply.route, request, _Raw, timeout=30)
        return await self.compare(reply, data, old_walk)

    async def upload(self, header: v1.UploadAttachmentHeader, content: bytes) -> Any:
        """:meth:`both` of an UploadAttachment (a client stream: header, then content)."""
        header.caller = self.caller

        async def parts() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            yield v1.UploadAttachmentRequest(chunk=content)

        reply = named.UPLOAD_ATTACHMENT
        with acting_as(self.assertion):
            send: Any = self.model._stream_unary
            request_class = v1.UploadAttachmentRequest
            data: bytes = await call(send, reply.route, parts(), request_class, _Raw, timeout=30)
        return await self.compare(reply, data, _old_upload)

    async def compare(
        self,
        reply: named.NamedReply[Any],
        data: bytes,
        old_walk: Callable[[UserRefs, Any], None],
    ) -> Any:
        """Compare the two paths on the Model's reply ``data``; the new path's reply."""
        new = await reply.named(reply.parse(data), self.users)
        assert isinstance(new, wire.Encoded)
        old = await self.old_path(reply, data, old_walk)
        assert new.SerializeToString() == wire.encode(old)
        # A reply upb refuses is read by betterproto2 and named alike; its
        # unknown field goes on to the bot, as the old path sent it.
        refused = reply.parse(data + UPB_REFUSES)
        assert isinstance(refused, reply.message_class)
        fallback = await reply.named(refused, self.users)
        assert not isinstance(fallback, wire.Encoded)
        old_refused = await self.old_path(reply, data + UPB_REFUSES, old_walk)
        assert wire.encode(fallback) == wire.encode(old_refused)
        assert new == old  # decodes it: from here on an ordinary message
        self.compared += 1
        return new

    async def old_path(
        self, reply: named.NamedReply[Any], data: bytes, old_walk: Callable[[UserRefs, Any], None]
    ) -> Any:
        """What the gateway made of ``data`` before: betterproto2, UserRefs, to_usernames."""
        old = wire.decode(reply.message_class, data)
        refs = UserRefs()
        old_walk(refs, old)
        await self.users.to_usernames(refs)
        return old


@pytest.fixture
async def paths(bots: Bots, connect_as: ConnectAs) -> AsyncIterator[_Paths]:
    me = await connect_as("robot").whoami()
    assert me.user is not None
    channel, auth_channel = bots.stack.model.channel(), bots.stack.auth.channel()
    try:
        yield _Paths(
            v1.ModelStub(channel),
            UserDirectory(v1.AuthenticatorStub(auth_channel), timeout_seconds=30),
            bots.stack.assertion_for(me.user.user_id, groups=list(me.groups)),
            v1.Caller(user_id=me.user.user_id, groups=list(me.groups)),
        )
    finally:
        channel.close()
        auth_channel.close()


async def _world(
    connect_as: ConnectAs, paths: _Paths, tmp_path: Path
) -> tuple[v1.Component, v1.CustomField, list[v1.Issue]]:
    """A component with a USER field and issues naming people everywhere, one a stranger."""
    robot, *_ = await signed_in(connect_as, "robot", "boss", "viewer", "outsider")
    component = await robot.create_component(
        f"Wire-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    owner = await robot.create_custom_field(component.id, "Owner", v1.CustomFieldType.USER)
    issues = [
        await robot.create_issue(
            f"wire {n} ü",
            component.id,
            assignee="boss",
            verifier="viewer" if n % 2 else "",
            cc=["outsider", "robot"][: n % 3],
            custom_fields=[
                v1.CustomFieldValue(field_id=owner.id, values=[["boss"], ["robot"], []][n % 3])
            ],
        )
        for n in range(5)
    ]
    # A person the Authenticator never minted (an imported author, a removed
    # account), written behind the API's back: the Model keeps ids as given.
    stranger = issues[0]
    changed = await paths.both(
        named.CHANGE_ISSUE,
        v1.ChangeIssueRequest(
            issue_id=stranger.id,
            expected_version=stranger.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(assignee=_GONE),
                cc_add=[_GONE],
                custom_fields_set=[v1.CustomFieldValue(field_id=owner.id, values=[_GONE])],
                update_mask=FieldMask(paths=["assignee"]),
            ),
            comment="to a stranger",
        ),
        _old_change,
    )
    assert (changed.issue.assignee, changed.issue.cc) == (_GONE, [_GONE])
    source = tmp_path / "wire.log"
    source.write_bytes(b"a log\n" * 10)
    await robot.attach(issues[1].id, source, comment="the log")
    return component, owner, [await robot.get_issue(i.id) for i in issues]


async def test_every_moved_reply_is_the_old_paths_bytes(
    connect_as: ConnectAs, paths: _Paths, tmp_path: Path
) -> None:
    robot = connect_as("robot")
    component, owner, issues = await _world(connect_as, paths, tmp_path)

    # Searches: every page of a 2-issue page size, a masked page, an empty one.
    eq = v1.SearchOperator.EQ
    query = v1.StructuredQuery(filter=term(v1.SearchField.COMPONENT, eq, component.id))
    token, seen = "", []
    while True:
        page = await paths.both(
            named.SEARCH_ISSUES,
            v1.SearchIssuesRequest(query=query, page=v1.PageRequest(page_size=2, page_token=token)),
            _old_issues,
        )
        seen += [i.id for i in page.issues]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(i.id for i in issues)
    masked = FieldMask(paths=["id", "assignee", "cc", "custom_fields"])
    await paths.both(
        named.SEARCH_ISSUES, v1.SearchIssuesRequest(query=query, read_mask=masked), _old_issues
    )
    nothing = v1.StructuredQuery(filter=term(v1.SearchField.TEXT, eq, "zz" + secrets.token_hex(6)))
    empty = await paths.both(
        named.SEARCH_ISSUES, v1.SearchIssuesRequest(query=nothing), _old_issues
    )
    assert (empty.issues, empty.next_page_token) == ([], "")

    # Batch reads, a missing id among them.
    ids = [i.id for i in issues] + [987_654_321]
    batch = await paths.both(
        named.BATCH_GET_ISSUES, v1.BatchGetIssuesRequest(issue_ids=ids), _old_issues
    )
    assert batch.missing_ids == [987_654_321]
    assert batch.issues[0].assignee == _GONE
    assert {i.assignee for i in batch.issues[1:]} == {"boss"}

    # Changes: a comment, its edit, its redaction, a batch change, a deletion.
    target = issues[2]
    commented = await paths.both(
        named.CHANGE_ISSUE,
        v1.ChangeIssueRequest(
            issue_id=target.id, expected_version=target.version, comment="typo hre"
        ),
        _old_change,
    )
    edited = await paths.both(
        named.EDIT_COMMENT,
        v1.EditCommentRequest(
            issue_id=target.id,
            expected_version=commented.issue.version,
            entry_version=commented.entry.version,
            comment="typo here",
        ),
        _old_change,
    )
    redacted = await paths.both(
        named.REDACT,
        v1.RedactRequest(
            issue_id=target.id,
            expected_version=edited.issue.version,
            target=v1.RedactionTarget.COMMENT,
            entry_version=commented.entry.version,
        ),
        _old_change,
    )
    assert redacted.entry.author == "robot"
    versions = [v1.IssueVersion(issue_id=i.id, expected_version=i.version) for i in issues[3:]] + [
        v1.IssueVersion(issue_id=target.id, expected_version=1)
    ]  # stale: a failed result
    results = await paths.both(
        named.BATCH_CHANGE_ISSUES,
        v1.BatchChangeIssuesRequest(issues=versions, delta=v1.IssueDelta(cc_add=[_GONE])),
        _old_results,
    )
    assert [r.code != 0 for r in results.results] == [False, False, True]
    # Issues read one at a time and created one at a time (no coalescing).
    for issue in issues:
        await paths.both(named.GET_ISSUE, v1.GetIssueRequest(issue_id=issue.id), _old_issue)
    me = paths.caller.user_id
    created = await paths.both(
        named.CREATE_ISSUE,
        v1.CreateIssueRequest(
            fields=v1.IssueFields(title="made ü", component_id=component.id, assignee=_GONE),
            cc=[me, _GONE],
            custom_fields=[v1.CustomFieldValue(field_id=owner.id, values=[me])],
        ),
        _old_issue,
    )
    custom = [list(v.values) for v in created.custom_fields]
    assert (created.reporter, created.assignee, custom) == ("robot", _GONE, [["robot"]])

    # Attachments: an upload, the list, each one's metadata, a deletion.
    uploaded = await paths.upload(
        v1.UploadAttachmentHeader(issue_id=created.id, name="wire.txt", comment="more", size=4),
        b"wire",
    )
    assert (uploaded.attachment.uploader, uploaded.entry.author) == ("robot", "robot")
    for issue in (issues[1], created):
        listed = await paths.both(
            named.LIST_ATTACHMENTS, v1.ListAttachmentsRequest(issue_id=issue.id), _old_attachments
        )
        assert [a.uploader for a in listed.attachments] == ["robot"]
        for attachment in listed.attachments:
            await paths.both(
                named.GET_ATTACHMENT,
                v1.GetAttachmentRequest(attachment_id=attachment.id),
                _old_attachment,
            )
    attached = (await robot.list_attachments(issues[1].id))[0]
    await paths.both(
        named.DELETE_ATTACHMENT,
        v1.DeleteAttachmentRequest(attachment_id=attached.id),
        _old_change,
    )

    # Histories: every page, with edits, a redaction, attachments, strangers.
    for issue in (issues[0], issues[1], target):
        token = ""
        while True:
            history = await paths.both(
                named.LIST_HISTORY,
                v1.ListHistoryRequest(
                    issue_id=issue.id, page=v1.PageRequest(page_size=2, page_token=token)
                ),
                _old_entries,
            )
            token = history.next_page_token
            if not token:
                break
    assert paths.compared >= 28


async def _error(coro: Any) -> tuple[str, str]:
    try:
        await coro
    except BuglessError as exc:
        return type(exc).__name__, exc.message
    raise AssertionError("no error")


async def test_the_api_sends_usernames_and_the_model_calls_errors(
    bots: Bots, connect_as: ConnectAs, paths: _Paths, tmp_path: Path
) -> None:
    robot, outsider = connect_as("robot"), connect_as("outsider")
    component, _owner, issues = await _world(connect_as, paths, tmp_path)
    found = await robot.search_issues(f"componentid:{component.id}", page_size=50)
    by_id = {i.id: i for i in found.issues}
    assert by_id[issues[0].id].assignee == _GONE  # unknown: left as the id
    assert sorted(by_id[issues[2].id].cc) == ["outsider", "robot"]  # in id order
    assert [list(v.values) for v in by_id[issues[3].id].custom_fields] == [["boss"]]
    assert by_id[issues[1].id].verifier == "viewer"
    history = await robot.list_history(issues[1].id)
    assert {e.author for e in history.entries} == {"robot"}
    assert [a.uploader for e in history.entries for a in e.attachments] == ["robot"]
    batch = await robot.batch_get_issues([issues[1].id, 987_654_321])
    assert ([i.reporter for i in batch.issues], batch.missing_ids) == (["robot"], [987_654_321])

    # Errors: what the Model says to the same call, mapped the same way.
    model = bots.stack.acting_model(paths.model)
    issue = issues[3]
    stale = await _error(
        robot.update_issue(issue.id, title="x", expected_version=issue.version + 5)
    )
    assert stale[0] in (Conflict.__name__, "IssueVersionConflict")
    direct = await _error(
        call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=paths.caller,
                issue_id=issue.id,
                expected_version=issue.version + 5,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(title="x"), update_mask=FieldMask(paths=["title"])
                ),
            ),
        )
    )
    assert stale == direct
    hidden = await _error(outsider.list_history(issue.id))
    assert hidden[0] == NotFound.__name__
    refused = await _error(outsider.redact(issue.id, entry_version=1, expected_version=1))
    assert refused[0] in (NotFound.__name__, PermissionDenied.__name__)
    unknown = await _error(robot.update_issue(issue.id, assignee="nobody-" + secrets.token_hex(3)))
    assert unknown[0] == "InvalidArgument"
    assert "no bugless user is named" in unknown[1]
