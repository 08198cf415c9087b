"""Webhooks configured per component by its admins (real processes, a real receiver).

The Model, the Authenticator and ``bugless notify serve`` run as processes;
the endpoints are managed over the notifier's gRPC API the way the web calls
it (the ``web`` service identity forwarding the person's identity assertion,
issued by the real Authenticator); a real HTTP server receives the signed
POSTs.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import json
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from notify_support import SECRET, WebhookReceiver

from bugless_core.clients import ActingFor, acting_as, call
from bugless_core.errors import InvalidArgument, PermissionDenied
from bugless_dev.stack import LocalStack, RunningService
from bugless_notify.addresses import ALLOW_SETTING
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


@pytest.fixture
async def notifier(bugless_stack: LocalStack, smtp_sink: SmtpSink) -> AsyncIterator[RunningService]:
    service = await asyncio.to_thread(
        bugless_stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
        *("--public-url", "https://bugs.example.test"),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        yield service
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, service)


@pytest.fixture
async def default_notifier(
    bugless_stack: LocalStack, smtp_sink: SmtpSink
) -> AsyncIterator[RunningService]:
    """A notifier with the default address rule (the stack allows loopback; this empties it)."""
    service = await asyncio.to_thread(
        bugless_stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
        name=f"notify-{secrets.token_hex(3)}",
        env={ALLOW_SETTING: ""},
    )
    try:
        yield service
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, service)


async def _wait(receiver: WebhookReceiver, path: str, count: int) -> list[dict[str, object]]:
    got = await asyncio.to_thread(receiver.wait_for, path, count, 90.0)
    return [json.loads(r.body) for r in got]


async def test_component_admins_manage_endpoints_that_get_signed_deliveries_of_their_component(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("alice", "bob"):
        created = await asyncio.to_thread(bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3)
        ids[name] = created["user_id"]
    bob = v1.Caller(user_id=ids["bob"])
    acl = [
        v1.AclEntry(principal=v1.Principal(user=ids["alice"]), role=v1.Role.ADMIN),
        v1.AclEntry(principal=v1.Principal(user=ids["bob"]), role=v1.Role.EDITOR),
    ]
    parent = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"hooks-{tag}", acl=acl)
    )
    child = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name="child", parent_id=parent.id)
    )
    other = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"other-{tag}", acl=acl)
    )
    alice_says = await as_person.assertion(ids["alice"])
    bob_says = await as_person.assertion(ids["bob"])

    # bob edits the component but does not administer it.
    with acting_as(bob_says), pytest.raises(PermissionDenied, match="only admins"):
        await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=parent.id, url=receiver.url("/bob"), secret=SECRET
            ),
        )
    with acting_as(bob_says), pytest.raises(PermissionDenied):
        await call(
            web_to_notifier.list_component_webhooks,
            v1.ListComponentWebhooksRequest(component_id=parent.id),
        )
    with acting_as(alice_says):
        with pytest.raises(InvalidArgument, match="secret"):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=parent.id, url=receiver.url("/x"), secret="short"
                ),
            )
        subtree = await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=parent.id,
                url=receiver.url("/subtree?token=hidden"),
                secret=SECRET,
                include_subtree=True,
            ),
        )
        only = await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=parent.id,
                url=receiver.url("/only"),
                secret=SECRET,
                payload_format="chat",
            ),
        )
        listing = await call(
            web_to_notifier.list_component_webhooks,
            v1.ListComponentWebhooksRequest(component_id=parent.id),
        )
    # The secret (and the URL's path and query) never come back.
    assert subtree.secret_hint == SECRET[-4:]
    assert subtree.url_origin == f"http://127.0.0.1:{receiver.port}"
    assert SECRET not in repr(listing)
    assert "hidden" not in repr(listing)
    assert {w.name for w in listing.webhooks} == {subtree.name, only.name}
    assert all(w.created_by == ids["alice"] and w.enabled for w in listing.webhooks)
    assert [(e.action, e.actor) for e in listing.history] == [("add", ids["alice"])] * 2

    async def file(component: v1.Component, title: str) -> v1.Issue:
        return await model.create_issue(
            v1.CreateIssueRequest(
                caller=bob,
                fields=v1.IssueFields(title=title, component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            )
        )

    in_other = await file(other, f"Other {tag}")
    in_child = await file(child, f"Child {tag}")
    in_parent = await file(parent, f"Parent {tag}")

    bodies = await _wait(receiver, "/subtree?token=hidden", 2)
    chat = await _wait(receiver, "/only", 1)
    assert all(r.signature_ok for r in receiver.received())
    got = {b["issue"]["id"] for b in bodies}  # type: ignore[index]
    assert got == {in_child.id, in_parent.id}
    assert {r.delivery_id for r in receiver.received("/subtree?token=hidden")} == {
        f"change-{i.id}-{i.version}/webhook/{subtree.name}" for i in (in_child, in_parent)
    }
    assert f"Parent {tag}" in str(chat[0]["text"])
    assert set(chat[0]) == {"text"}

    # Disabled: no new deliveries (the enabled one still gets them); then deleted.
    with acting_as(alice_says):
        disabled = await call(
            web_to_notifier.set_component_webhook_enabled,
            v1.SetComponentWebhookEnabledRequest(
                component_id=parent.id, name=only.name, enabled=False
            ),
        )
    assert not disabled.enabled
    await file(parent, f"Later {tag}")
    await _wait(receiver, "/subtree?token=hidden", 3)
    await asyncio.sleep(2)
    assert len(receiver.received("/only")) == 1
    # Nothing ever went to another component's path, nor to bob's refused one.
    assert not receiver.received("/bob")
    assert in_other.id not in got
    with acting_as(alice_says):
        left = await call(
            web_to_notifier.delete_component_webhook,
            v1.DeleteComponentWebhookRequest(component_id=parent.id, name=only.name),
        )
    assert [w.name for w in left.webhooks] == [subtree.name]
    assert [e.action for e in left.history] == ["delete", "disable", "add", "add"]


async def test_an_endpoint_sees_issues_only_as_the_admin_who_added_it(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    tag = secrets.token_hex(3)
    ids = {}
    for name, admin in (("dana", False), ("root", True), ("erin", False)):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, admin=admin
        )
        ids[name] = created["user_id"]
    erin = v1.AclEntry(principal=v1.Principal(user=ids["erin"]), role=v1.Role.EDITOR)
    component = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"restricted-{tag}",
            acl=[v1.AclEntry(principal=v1.Principal(user=ids["dana"]), role=v1.Role.ADMIN), erin],
        )
    )
    for who, path in (("dana", "/dana"), ("root", "/root")):
        with acting_as(await as_person.assertion(ids[who])):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id, url=receiver.url(path), secret=SECRET
                ),
            )
    # dana loses her access to the component: her endpoint must tell nobody any more.
    await model.update_component(
        v1.UpdateComponentRequest(
            caller=ADMIN,
            component=v1.Component(id=component.id, acl=[erin]),
            update_mask=FieldMask(paths=["acl"]),
            expected_version=component.version,
        )
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=v1.Caller(user_id=ids["erin"]),
            fields=v1.IssueFields(title=f"Secret {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    await _wait(receiver, "/root", 1)
    # A hotlist change: the payload names the hotlist (root may see it).
    owner = v1.Caller(user_id=ids["erin"])
    hotlist = await model.create_hotlist(v1.CreateHotlistRequest(caller=owner, name=f"hot-{tag}"))
    await model.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=owner, hotlist_id=hotlist.id, issue_ids=[issue.id])
    )
    bodies = await _wait(receiver, "/root", 2)
    assert f"hot-{tag}" in json.dumps(bodies[1]), bodies[1]
    await asyncio.sleep(2)
    assert receiver.received("/dana") == []


async def test_by_default_component_webhooks_may_not_reach_this_machine(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    default_notifier: RunningService,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(bugless_stack.add_user, f"carol{tag}", "pw-" + tag * 3)
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"ssrf-{tag}", acl=acl)
    )
    # This machine's own name, which resolves to loopback (as /etc/hosts has it).
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    assert all(ipaddress.ip_address(str(a)).is_loopback for a in resolved), resolved
    says = await as_person.assertion(alice["user_id"])
    channel = bugless_stack.client_address("notify", identity="web").channel()
    try:
        notifier = v1.NotifierStub(channel)
        with acting_as(says):
            for literal in (receiver.url("/ip"), f"http://localhost:{receiver.port}/name"):
                with pytest.raises(InvalidArgument, match=ALLOW_SETTING):
                    await call(
                        notifier.add_component_webhook,
                        v1.AddComponentWebhookRequest(
                            component_id=component.id, url=literal, secret=SECRET
                        ),
                    )
            # A name is accepted when added, and refused when it resolves to loopback.
            added = await call(
                notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id,
                    url=f"http://{host}:{receiver.port}/by-name",
                    secret=SECRET,
                ),
            )
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"SSRF {tag}", component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            )
        )
        dead: list[v1.DeadLetter] = []
        for _ in range(450):
            status = await notifier.get_delivery_status(
                v1.GetDeliveryStatusRequest(max_dead_letters=20)
            )
            dead = [d for d in status.dead_letters if d.delivery_id.endswith(added.name)]
            if dead:
                break
            await asyncio.sleep(0.2)
    finally:
        channel.close()
    (letter,) = dead
    assert letter.attempts == 1  # permanent: not retried
    assert f"{host} resolves to" in letter.last_error
    assert "loopback address" in letter.last_error
    assert ALLOW_SETTING in letter.last_error
    assert receiver.received() == []


async def test_a_redaction_reaches_webhooks_as_its_own_event_without_the_text(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    """A receiver taking ``issue.commented`` for comments is not handed a redaction.

    Before, the redaction went out as ``issue.commented`` with an empty
    comment, which such a receiver stored as one.
    """
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(bugless_stack.add_user, f"alice{tag}", "pw-" + tag * 3)
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"redact-hooks-{tag}", acl=acl)
    )
    with acting_as(await as_person.assertion(alice["user_id"])):
        for path, form in (("/json", "json"), ("/chat", "chat")):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id,
                    url=receiver.url(path),
                    secret=SECRET,
                    payload_format=form,
                ),
            )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Redacted {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    secret = f"hunter2-{tag}"
    said = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=issue.version,
            comment=f"the root password is {secret}",
        )
    )
    assert said.issue is not None
    assert said.entry is not None
    bodies = await _wait(receiver, "/json", 2)
    assert [b["event"] for b in bodies] == ["issue.created", "issue.commented"]
    redacted = await model.redact(
        v1.RedactRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=said.issue.version,
            target=v1.RedactionTarget.COMMENT,
            entry_version=said.entry.version,
        )
    )
    assert redacted.issue is not None
    bodies = await _wait(receiver, "/json", 3)
    chats = await _wait(receiver, "/chat", 3)
    last = bodies[2]
    assert last["event"] == "issue.comment_redacted"
    entry = last["entry"]
    assert isinstance(entry, dict)
    assert entry["version"] == redacted.issue.version
    assert entry["redaction"] == {"target": "comment", "version": said.entry.version}
    assert entry["comment"] == ""
    assert secret not in json.dumps(last)
    assert "redacted a comment of it" in str(chats[2]["text"])
    assert secret not in str(chats[2]["text"])


async def test_a_file_deletion_reaches_webhooks_as_its_own_event_naming_file_and_deleter(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    """A deletion is ``issue.attachment_deleted``, naming the file and who deleted it.

    Before, it went out as ``issue.commented`` with an empty comment: a
    receiver filtering on that event stored an empty comment, and one
    taking every event could not tell a deletion by its type.
    """
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(
        functools.partial(bugless_stack.add_user, display_name=f"Alice {tag}"),
        f"alice{tag}",
        "pw-" + tag * 3,
    )
    alice_caller = v1.Caller(user_id=alice["user_id"])
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"file-hooks-{tag}", acl=acl)
    )
    with acting_as(await as_person.assertion(alice["user_id"])):
        await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=component.id, url=receiver.url("/files"), secret=SECRET
            ),
        )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Files {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    header = v1.UploadAttachmentHeader(
        caller=alice_caller, issue_id=issue.id, name="build.log", size=12
    )
    # A stream names its caller in its header only: its assertion goes with
    # the call, on a channel of its own (the model fixture signs per request).
    channel = bugless_stack.client_address("model", identity="web").channel()
    try:
        with acting_as(bugless_stack.assertion_for(alice["user_id"])):
            uploaded = await call(
                v1.ModelStub(channel).upload_attachment,
                [
                    v1.UploadAttachmentRequest(header=header),
                    v1.UploadAttachmentRequest(chunk=b"build output"),
                ],
            )
    finally:
        channel.close()
    assert uploaded.attachment is not None
    file_id = uploaded.attachment.id
    deleted = await model.delete_attachment(
        v1.DeleteAttachmentRequest(caller=alice_caller, attachment_id=file_id)
    )
    assert deleted.entry is not None
    assert uploaded.entry is not None
    bodies = await _wait(receiver, "/files", 3)
    entries = [b["entry"] for b in bodies]
    assert all(isinstance(e, dict) for e in entries)
    events = {e["version"]: b["event"] for e, b in zip(entries, bodies, strict=True)}  # type: ignore[index]
    # Files attached with no comment are issue.attachment_added (the next test).
    assert events == {
        1: "issue.created",
        uploaded.entry.version: "issue.attachment_added",
        deleted.entry.version: "issue.attachment_deleted",
    }
    [entry] = [e for e in entries if e["version"] == deleted.entry.version]  # type: ignore[index]
    assert isinstance(entry, dict)
    assert entry["deleted_attachment"] == {"id": file_id, "name": "build.log"}
    assert entry["author"] == {"name": f"Alice {tag}", "username": f"alice{tag}"}
    assert (entry["comment"], entry["changes"], entry["attachments"]) == ("", [], [])


async def test_files_attached_without_a_comment_reach_webhooks_as_their_own_event_with_links(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    """An upload with no comment is ``issue.attachment_added``, listing the files to fetch.

    Before, it went out as ``issue.commented`` with an empty comment, as a
    deletion did: a receiver storing comments stored an empty one. An upload
    with a comment stays ``issue.commented`` and lists its files the same way;
    the chat form keeps its wording ("attached a file to it", the file line).
    """
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(
        functools.partial(bugless_stack.add_user, display_name=f"Alice {tag}"),
        f"alice{tag}",
        "pw-" + tag * 3,
    )
    alice_caller = v1.Caller(user_id=alice["user_id"])
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"upload-hooks-{tag}", acl=acl)
    )
    with acting_as(await as_person.assertion(alice["user_id"])):
        for path, form in (("/json", "json"), ("/chat", "chat")):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id,
                    url=receiver.url(path),
                    secret=SECRET,
                    payload_format=form,
                ),
            )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Uploads {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    uploads = []
    for name, comment in (("crash report.log", ""), ("core.txt", "The core it left.")):
        header = v1.UploadAttachmentHeader(
            caller=alice_caller, issue_id=issue.id, name=name, size=12, comment=comment
        )
        channel = bugless_stack.client_address("model", identity="web").channel()
        try:
            with acting_as(bugless_stack.assertion_for(alice["user_id"])):
                uploads.append(
                    await call(
                        v1.ModelStub(channel).upload_attachment,
                        [
                            v1.UploadAttachmentRequest(header=header),
                            v1.UploadAttachmentRequest(chunk=b"build output"),
                        ],
                    )
                )
        finally:
            channel.close()
    bodies = await _wait(receiver, "/json", 3)
    entries = {e["version"]: (b["event"], e) for b in bodies if isinstance(e := b["entry"], dict)}
    assert len(entries) == 3
    alone, commented = uploads
    assert alone.entry is not None
    assert alone.attachment is not None
    assert commented.entry is not None
    assert commented.attachment is not None
    event, entry = entries[alone.entry.version]
    assert event == "issue.attachment_added"
    assert entry["author"] == {"name": f"Alice {tag}", "username": f"alice{tag}"}
    assert (entry["comment"], entry["changes"], entry["deleted_attachment"]) == ("", [], None)
    assert alone.attachment.content_type  # sniffed by the Model
    assert entry["attachments"] == [
        {
            "id": alone.attachment.id,
            "name": "crash report.log",
            "size": 12,
            "content_type": alone.attachment.content_type,
            "url": f"https://bugs.example.test/attachments/{alone.attachment.id}/crash%20report.log",
        }
    ]
    event, entry = entries[commented.entry.version]
    assert (event, entry["comment"]) == ("issue.commented", "The core it left.")
    assert entry["attachments"] == [
        {
            "id": commented.attachment.id,
            "name": "core.txt",
            "size": 12,
            "content_type": commented.attachment.content_type,
            "url": f"https://bugs.example.test/attachments/{commented.attachment.id}/core.txt",
        }
    ]
    chats = [str(b["text"]) for b in await _wait(receiver, "/chat", 3)]
    [alone_chat] = [c for c in chats if "attached a file to it" in c]
    assert alone_chat.splitlines()[1:] == ["Attached: crash report.log (12 bytes)"]


async def test_an_imported_history_reaches_no_endpoint_and_later_changes_do(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    """An import's entries are no news to a component's endpoints, as to its people.

    Before, the imported creation and comment each went to every endpoint
    (a chat channel got one message per entry of the imported past), though
    they mailed no one since the notifier left imported entries out.
    """
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(bugless_stack.add_user, f"alice{tag}", "pw-" + tag * 3)
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"moved-in-hooks-{tag}", acl=acl)
    )
    with acting_as(await as_person.assertion(alice["user_id"])):
        for path, form in (("/json", "json"), ("/chat", "chat")):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id,
                    url=receiver.url(path),
                    secret=SECRET,
                    payload_format=form,
                ),
            )
    then = datetime.datetime(2023, 3, 1, 9, 0, tzinfo=datetime.UTC)
    channel = bugless_stack.client_address("model", identity="import").channel()
    try:
        importer = bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
        imported = await importer.import_issue(
            v1.ImportIssueRequest(
                caller=v1.Caller(user_id="test-admin", admin=True, import_issues=True),
                external_id=f"trac:{tag}",
                fields=v1.IssueFields(title=f"Crash on save {tag}", component_id=component.id),
                reporter=alice["user_id"],
                description="Saving crashes.",
                created_at=then,
                history=[
                    v1.ImportedEntry(
                        author=alice["user_id"],
                        created_at=then + datetime.timedelta(hours=2),
                        comment="Reproduced in 2023.",
                    )
                ],
            )
        )
    finally:
        channel.close()
    assert imported.issue is not None
    said = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=imported.issue.id,
            expected_version=imported.issue.version,
            comment="Still happens after the move.",
        )
    )
    assert said.entry is not None
    # The feed holds the imported entries before the comment: had they been
    # sent, they would have been queued no later than it.
    bodies = await _wait(receiver, "/json", 1)
    chats = await _wait(receiver, "/chat", 1)
    await asyncio.sleep(1.0)  # a delivery queued with it would have arrived by now
    bodies = [json.loads(r.body) for r in receiver.received("/json")]
    assert [b["event"] for b in bodies] == ["issue.commented"]
    entry = bodies[0]["entry"]
    assert isinstance(entry, dict)
    assert entry["version"] == said.entry.version
    assert entry["comment"] == "Still happens after the move."
    chats = [json.loads(r.body) for r in receiver.received("/chat")]
    assert len(chats) == 1
    assert "Reproduced in 2023" not in str(chats[0]["text"])


async def test_a_one_click_links_assertion_is_refused_by_the_notifier_itself(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    """The link's assertion (good for one SetIssueMute) manages no endpoint, whatever follows.

    alice administers the component, so her own assertion may do all four
    calls: every refusal here is the scope's. Before, the notifier took the
    scoped assertion as alice and only the Model's refusal of the GetComponent
    that followed stopped it ("not for GetComponent"); now the notifier
    refuses the call it was asked, before the Model is asked anything.
    """
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(bugless_stack.add_user, f"alice{tag}", "pw-" + tag * 3)
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"scoped-hooks-{tag}", acl=acl)
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Loud {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    with acting_as(await as_person.assertion(alice["user_id"])):
        kept = await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=component.id, url=receiver.url("/kept"), secret=SECRET
            ),
        )
    as_notifier = bugless_stack.client_address("auth", identity="notify").channel()
    as_web = bugless_stack.client_address("auth", identity="web").channel()
    try:
        tokens = await call(
            v1.AuthenticatorStub(as_notifier).issue_unsubscribe_tokens,
            v1.IssueUnsubscribeTokensRequest(
                targets=[v1.UnsubscribeTarget(user_id=alice["user_id"], issue_id=issue.id)]
            ),
        )
        grant = await call(
            v1.AuthenticatorStub(as_web).redeem_unsubscribe_token,
            v1.RedeemUnsubscribeTokenRequest(token=tokens.tokens[0]),
        )
    finally:
        as_notifier.close()
        as_web.close()
    assert grant.identity is not None
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "ListComponentWebhooks": lambda: call(
            web_to_notifier.list_component_webhooks,
            v1.ListComponentWebhooksRequest(component_id=component.id),
        ),
        "AddComponentWebhook": lambda: call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=component.id, url=receiver.url("/link"), secret=SECRET
            ),
        ),
        "SetComponentWebhookEnabled": lambda: call(
            web_to_notifier.set_component_webhook_enabled,
            v1.SetComponentWebhookEnabledRequest(
                component_id=component.id, name=kept.name, enabled=False
            ),
        ),
        "DeleteComponentWebhook": lambda: call(
            web_to_notifier.delete_component_webhook,
            v1.DeleteComponentWebhookRequest(component_id=component.id, name=kept.name),
        ),
    }
    for method, made in calls.items():
        with acting_as(grant.identity.assertion), pytest.raises(PermissionDenied) as refused:
            await made()
        said = str(refused.value)
        assert f"only good for SetIssueMute(issue_id={issue.id}, muted=True)" in said, said
        # The notifier's own refusal: the Model's would name GetComponent.
        assert said.endswith(f"not for {method}"), said
        assert refused.value.reason == "ASSERTION_SCOPE"
    with acting_as(await as_person.assertion(alice["user_id"])):
        listing = await call(
            web_to_notifier.list_component_webhooks,
            v1.ListComponentWebhooksRequest(component_id=component.id),
        )
    assert [(w.name, w.enabled) for w in listing.webhooks] == [(kept.name, True)]
    assert [e.action for e in listing.history] == ["add"]
