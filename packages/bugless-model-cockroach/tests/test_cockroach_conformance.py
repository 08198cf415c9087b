"""The shared Model contracts, run against the cockroach backend: one class per contract.

Every contract runs, ``FeedContract``, ``WatchContract`` and
``WatchResumeContract`` included: the backend's change feed is sequenced
(writers append to a pending table; the README's "The change feed").
"""

from __future__ import annotations

import pytest

from bugless_model_cockroach import CockroachBackend
from bugless_testing.model_contracts import (
    AccessContract,
    AttachmentContract,
    BadInputContract,
    BadReadContract,
    BatchChangeContract,
    BatchCreateContract,
    ChangeContract,
    ComponentContract,
    ComponentShownPathContract,
    ConcurrencyContract,
    CustomFieldContract,
    CustomFieldSearchContract,
    EditContract,
    FeedContract,
    FollowContract,
    HistoryContract,
    HotlistContract,
    ImportContract,
    ImportedFileContract,
    ImportedLabelContract,
    ImportedRelationContract,
    IssueContract,
    NotificationSettingsContract,
    RedactionContract,
    SavedSearchContract,
    SearchComponentNameContract,
    SearchContract,
    SearchOrderContract,
    SearchParityContract,
    SearchReadMaskContract,
    SearchReferenceContract,
    ServerInfoContract,
    ViewerCheckContract,
    WatchContract,
    WatchReferenceContract,
    WatchResumeContract,
    WatchStateContract,
)

pytestmark = pytest.mark.bugless_backend.with_args(CockroachBackend)


class TestAccess(AccessContract): ...


class TestAttachment(AttachmentContract): ...


class TestBadInput(BadInputContract): ...


class TestBadRead(BadReadContract): ...


class TestChange(ChangeContract): ...


class TestComponent(ComponentContract): ...


class TestComponentShownPath(ComponentShownPathContract): ...


class TestConcurrency(ConcurrencyContract): ...


class TestBatchChanges(BatchChangeContract): ...


class TestHistory(HistoryContract): ...


class TestHotlist(HotlistContract): ...


class TestIssue(IssueContract): ...


class TestSavedSearch(SavedSearchContract): ...


class TestSearch(SearchContract): ...


class TestSearchOrder(SearchOrderContract): ...


class TestServerInfo(ServerInfoContract): ...


class TestWatch(WatchContract): ...


class TestWatchReference(WatchReferenceContract): ...


class TestWatchResume(WatchResumeContract): ...


class TestWatchState(WatchStateContract): ...


class TestEdit(EditContract): ...


class TestRedaction(RedactionContract): ...


class TestCustomField(CustomFieldContract): ...


class TestCustomFieldSearch(CustomFieldSearchContract): ...


class TestSearchParity(SearchParityContract): ...


class TestSearchReference(SearchReferenceContract): ...


class TestSearchComponentName(SearchComponentNameContract): ...


class TestSearchReadMask(SearchReadMaskContract): ...


class TestImport(ImportContract): ...


class TestImportedFile(ImportedFileContract): ...


class TestImportedRelation(ImportedRelationContract): ...


class TestImportedLabel(ImportedLabelContract): ...


class TestFeed(FeedContract): ...


class TestBatchCreate(BatchCreateContract): ...


class TestFollow(FollowContract): ...


class TestNotificationSettings(NotificationSettingsContract): ...


class TestViewerCheck(ViewerCheckContract): ...
