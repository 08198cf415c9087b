"""Stated limits of the wire contract, in one place.

The .proto comments quote these numbers; the Model servicer enforces them
before a backend sees a request, so every backend has the same limits and a
client gets the same INVALID_ARGUMENT message from each.
"""

from __future__ import annotations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_COMPONENT_PAGE_SIZE = 1000
MAX_BATCH_GET = 500
MAX_BATCH_CHANGE = 100
MAX_BATCH_CREATE = 100
MAX_HOTLIST_ADD = 500
MAX_USER_LOOKUP = 1000
MAX_SUGGEST_USERS = 50
#: People per CheckViewers call (and per GetUserGroups, which answers it).
MAX_VIEWER_CHECK = 100
#: Tokens per IssueUnsubscribeTokens call (the notifier asks in calls of at
#: most this many: an issue may have more mail recipients).
MAX_UNSUBSCRIBE_TARGETS = 1000
#: Entries and candidate recipients per GetNotificationViews call (the
#: notifier checks an issue's recipients in calls of at most this many).
MAX_NOTIFICATION_VIEWS = 1000

MAX_TITLE_LENGTH = 500
MAX_COMMENT_LENGTH = 65_536
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 65_536
MAX_QUERY_LENGTH = 4_096
MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_USER_REFERENCE_LENGTH = 256
MAX_LIST_DELTA = 500
MAX_ACL_ENTRIES = 200
#: Search results are counted exactly up to this many; beyond, "more than N".
SEARCH_COUNT_CAP = 10_000
#: Sort keys one StructuredQuery may carry in ``order_by``; the web checks
#: several saved searches in one query only while their keys fit.
MAX_SORT_KEYS = 8

# ---- custom fields (issue 18) ----
#: Custom fields one component may define (its subtree inherits them).
MAX_CUSTOM_FIELDS_PER_COMPONENT = 50
#: Custom fields that may apply to one component (its own and its ancestors').
MAX_APPLICABLE_CUSTOM_FIELDS = 200
#: Options of one ENUM / ENUM_MULTI field.
MAX_CUSTOM_FIELD_OPTIONS = 200
#: Length of one option name, and of a TEXT field's value.
MAX_CUSTOM_FIELD_VALUE_LENGTH = 1_000
#: Custom field values one create or delta may set.
MAX_CUSTOM_FIELDS_PER_CHANGE = 100

# ---- import from other trackers (issue 21) ----
#: Length of an external reference ("github:org/repo#56").
MAX_EXTERNAL_ID_LENGTH = 200
#: History entries one ImportIssue call may carry.
MAX_IMPORTED_ENTRIES = 5_000
#: ImportIssues items per call (each is its own transaction; the call stays short).
MAX_IMPORT_BATCH = 200
#: Characters of a reason an import gives for what it left out (a file's
#: why-not-imported, an entry's ``relations_not_imported``).
MAX_IMPORT_REASON_LENGTH = 1_000
