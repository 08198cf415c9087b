"""The Model conformance suite: one contract class per behaviour area.

A backend's ``tests/test_conformance.py`` subclasses each class in one line;
the backend's conftest provides the session-scoped ``bugless_model_backend``
fixture and enables the ``bugless_testing.plugin`` pytest plugin, which
serves the backend over a real gRPC socket as the ``model`` fixture. Contracts
needing a capability carry ``requires_capability`` and are deselected on
backends that do not declare it.
"""

from __future__ import annotations

from bugless_testing.model_contracts._access import AccessContract
from bugless_testing.model_contracts._attachments import ATTACHMENT_LIMITS, AttachmentContract
from bugless_testing.model_contracts._bad_input import BadInputContract
from bugless_testing.model_contracts._bad_reads import BadReadContract
from bugless_testing.model_contracts._batch_changes import BatchChangeContract
from bugless_testing.model_contracts._batch_creates import BatchCreateContract
from bugless_testing.model_contracts._changes import ChangeContract
from bugless_testing.model_contracts._component_paths import ComponentShownPathContract
from bugless_testing.model_contracts._components import ComponentContract
from bugless_testing.model_contracts._concurrency import ConcurrencyContract
from bugless_testing.model_contracts._custom_field_search import CustomFieldSearchContract
from bugless_testing.model_contracts._custom_fields import CustomFieldContract
from bugless_testing.model_contracts._edits import EditContract, RedactionContract
from bugless_testing.model_contracts._feed import FeedContract
from bugless_testing.model_contracts._follow import FollowContract
from bugless_testing.model_contracts._history import HistoryContract
from bugless_testing.model_contracts._hotlists import HotlistContract
from bugless_testing.model_contracts._import_files import ImportedFileContract
from bugless_testing.model_contracts._import_labels import ImportedLabelContract
from bugless_testing.model_contracts._import_relations import ImportedRelationContract
from bugless_testing.model_contracts._imports import ImportContract
from bugless_testing.model_contracts._issues import IssueContract
from bugless_testing.model_contracts._saved_searches import SavedSearchContract
from bugless_testing.model_contracts._search import SearchContract
from bugless_testing.model_contracts._search_masks import SearchReadMaskContract
from bugless_testing.model_contracts._search_order import SearchOrderContract
from bugless_testing.model_contracts._search_parity import SearchParityContract
from bugless_testing.model_contracts._search_references import (
    SearchComponentNameContract,
    SearchReferenceContract,
    WatchReferenceContract,
)
from bugless_testing.model_contracts._server_info import ServerInfoContract
from bugless_testing.model_contracts._settings import NotificationSettingsContract
from bugless_testing.model_contracts._viewers import ViewerCheckContract
from bugless_testing.model_contracts._watch import WatchContract
from bugless_testing.model_contracts._watch_resume import WatchResumeContract
from bugless_testing.model_contracts._watch_states import WatchStateContract

__all__ = [
    "ATTACHMENT_LIMITS",
    "AccessContract",
    "AttachmentContract",
    "BadInputContract",
    "BadReadContract",
    "BatchChangeContract",
    "BatchCreateContract",
    "ChangeContract",
    "ComponentContract",
    "ComponentShownPathContract",
    "ConcurrencyContract",
    "CustomFieldContract",
    "CustomFieldSearchContract",
    "EditContract",
    "FeedContract",
    "FollowContract",
    "HistoryContract",
    "HotlistContract",
    "ImportContract",
    "ImportedFileContract",
    "ImportedLabelContract",
    "ImportedRelationContract",
    "IssueContract",
    "NotificationSettingsContract",
    "RedactionContract",
    "SavedSearchContract",
    "SearchComponentNameContract",
    "SearchContract",
    "SearchOrderContract",
    "SearchParityContract",
    "SearchReadMaskContract",
    "SearchReferenceContract",
    "ServerInfoContract",
    "ViewerCheckContract",
    "WatchContract",
    "WatchReferenceContract",
    "WatchResumeContract",
    "WatchStateContract",
]
