"""Rewritten request checks accept and refuse exactly what they did before.

``check_user_ref`` finds whitespace with ``str.split`` instead of a generator
over the characters, and ``check_create_issue`` reads an absent
``fields`` with ``is None`` instead of betterproto2's ``Message.__bool__``
(both for CPU per batch item). Since session 12, ``check_issue_fields`` tests
each value before it builds the field's path, ``check_create_issue`` skips
the checks of empty lists, and BatchCreateIssues checks each item with
``check_create_fields`` (its caller is checked once per batch). The previous
bodies are kept here, verbatim, as the reference: for random inputs, with
every character ``str.isspace`` accepts, both must pass or fail with the same
message.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_core.issue_fields import ENUM_FIELDS, SCALAR_FIELDS
from bugless_core.model import _validation as check
from bugless_proto import v1

#: Every code point ``str.isspace`` accepts (the Unicode whitespace classes
#: Zs, Zl, Zp, the bidi whitespace/segment/paragraph separators, and the
#: ASCII controls 0x09-0x0D and 0x1C-0x1F).
WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]

#: Characters a reference is made of: whitespace, NUL, ASCII, and any other.
_chars = st.one_of(
    st.sampled_from(WHITESPACE),
    st.sampled_from(["\x00", "a", "Z", "0", "_", "@", ".", "-"]),
    st.characters(),
)
_refs = st.one_of(
    st.text(_chars, max_size=12),
    st.text(_chars, min_size=limits.MAX_USER_REFERENCE_LENGTH - 2, max_size=300),
    st.builds(
        lambda a, w, b: a + w + b,
        st.text(st.characters(categories=["L", "N"]), max_size=8),
        st.sampled_from(WHITESPACE),
        st.text(st.characters(categories=["L", "N"]), max_size=8),
    ),
)


def _old_check_user_ref(value: str, path: str, *, required: bool = False) -> None:
    check.check_text(value, path, limits.MAX_USER_REFERENCE_LENGTH, required=required)
    if value != value.strip() or any(c.isspace() for c in value):
        raise check._fail(path, f"{value!r} is not a user reference (it contains whitespace)")


def _old_check_issue_fields(fields: v1.IssueFields, path: str, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(fields, name)
        where = f"{path}.{name}"
        if name == "title":
            check.check_text(value, where, limits.MAX_TITLE_LENGTH, required=True)
        elif name in ENUM_FIELDS:
            check.check_enum(value, where, allow_unspecified=name != "status")
        elif name == "component_id":
            check.check_id(value, where)
        elif name in {"assignee", "verifier"}:
            check.check_user_ref(value, where)
        else:  # parent_id, duplicate_of_id
            check.check_id(value, where, allow_zero=True)


def _old_check_create_issue(request: v1.CreateIssueRequest) -> None:
    check.require_caller(request.caller)
    fields = request.fields or v1.IssueFields()
    # In IssueFields' order: the old body's frozenset order followed the hash
    # seed (fixed since; test_validation's hash seed test).
    _old_check_issue_fields(fields, "fields", [n for n in SCALAR_FIELDS if n != "status"])
    check.check_enum(fields.status, "fields.status")
    check.check_text(request.description, "description", limits.MAX_DESCRIPTION_LENGTH)
    check._check_user_list(request.cc, "cc")
    check.check_ids(request.hotlist_ids, "hotlist_ids", limits.MAX_LIST_DELTA)
    check.check_ids(request.blocking_ids, "blocking_ids", limits.MAX_LIST_DELTA)
    check.check_ids(request.blocked_by_ids, "blocked_by_ids", limits.MAX_LIST_DELTA)
    check.check_text(request.idempotency_key, "idempotency_key", limits.MAX_IDEMPOTENCY_KEY_LENGTH)
    check._check_custom_values(request.custom_fields, "custom_fields")


def _outcome(call: object, *args: object, **kwargs: object) -> tuple[str, object] | None:
    """None when accepted; the message and metadata of the InvalidArgument otherwise."""
    assert callable(call)
    try:
        call(*args, **kwargs)
    except InvalidArgument as exc:
        return str(exc), exc.metadata
    return None


def test_every_whitespace_character_is_known() -> None:
    """The sample covers the classes (guards the list above against a typo)."""
    assert {" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x85", "\xa0"} <= set(WHITESPACE)
    assert {"\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u3000"} <= set(WHITESPACE)
    assert "\u200b" not in WHITESPACE  # zero width space is Cf, not whitespace


@settings(max_examples=3000)
@given(value=_refs, required=st.booleans())
def test_check_user_ref_matches_the_generator_version(value: str, required: bool) -> None:
    """Same accepted references, same refusal messages, on random text."""
    assert _outcome(check.check_user_ref, value, "p", required=required) == _outcome(
        _old_check_user_ref, value, "p", required=required
    )


def test_check_user_ref_each_whitespace_anywhere() -> None:
    """Every whitespace character, alone, leading, inside and trailing, is refused."""
    for w in WHITESPACE:
        for value in (w, w + "ab", "a" + w + "b", "ab" + w, w * 3):
            new = _outcome(check.check_user_ref, value, "p")
            assert new == _outcome(_old_check_user_ref, value, "p"), repr(value)
            assert new is not None
    assert _outcome(check.check_user_ref, "", "p") is None
    assert _outcome(check.check_user_ref, "a\u200bb", "p") is None


_enum_values = {
    name: st.one_of(
        st.sampled_from(list(kind)),
        # betterproto2 reads a number no member has as an unknown member.
        st.builds(kind, st.integers(-3, 40)),
    )
    for name, kind in (
        ("status", v1.Status),
        ("priority", v1.Priority),
        ("severity", v1.Severity),
        ("type", v1.IssueType),
    )
}
_ints = st.one_of(
    st.sampled_from([0, 1, -1, 2**53, 2**63 - 1, 2**63, -(2**63), True, False]),
    st.integers(-5, 10**6),
)
_titles = st.one_of(
    st.just(""),
    st.just(" "),
    st.text(_chars, max_size=20),
    st.text(_chars, min_size=limits.MAX_TITLE_LENGTH - 2, max_size=limits.MAX_TITLE_LENGTH + 2),
)
_fields = st.one_of(
    st.none(),
    st.just(v1.IssueFields()),
    st.builds(
        v1.IssueFields,
        title=_titles,
        component_id=_ints,
        assignee=st.one_of(st.just(""), _refs),
        verifier=st.one_of(st.just(""), _refs),
        parent_id=_ints,
        duplicate_of_id=_ints,
        **_enum_values,
    ),
)


@settings(max_examples=2000)
@given(
    fields=_fields,
    cc=st.lists(st.one_of(st.sampled_from(["u1", "u2"]), _refs), max_size=3),
    hotlist_ids=st.lists(_ints, max_size=3),
    user=st.one_of(st.just("u-1"), _refs),
)
def test_check_create_issue_matches_the_or_version(
    fields: v1.IssueFields | None, cc: list[str], hotlist_ids: list[int], user: str
) -> None:
    """No fields, all-default fields and random ones: the same outcome and message."""
    request = v1.CreateIssueRequest(
        caller=v1.Caller(user_id=user, groups=["g"]),
        fields=fields,
        cc=cc,
        hotlist_ids=hotlist_ids,
    )
    assert _outcome(check.check_create_issue, request) == _outcome(_old_check_create_issue, request)


@settings(max_examples=3000)
@given(
    fields=_fields.filter(lambda f: f is not None),
    names=st.lists(st.sampled_from(SCALAR_FIELDS), unique=True),
    path=st.sampled_from(["fields", "delta.fields", "entries[3].fields"]),
)
def test_check_issue_fields_matches_the_path_first_version(
    fields: v1.IssueFields, names: list[str], path: str
) -> None:
    """Any subset of the fields in any order (a delta's mask), status included."""
    assert _outcome(check.check_issue_fields, fields, path, names) == _outcome(
        _old_check_issue_fields, fields, path, names
    )


@settings(max_examples=2000)
@given(
    fields=_fields,
    cc=st.lists(st.one_of(st.sampled_from(["u1", "u2"]), _refs), max_size=3),
    blocking_ids=st.lists(_ints, max_size=3),
    description=st.one_of(st.just(""), st.text(_chars, max_size=20)),
    key=st.one_of(st.just(""), st.text(_chars, max_size=10)),
)
def test_a_batch_items_checks_match_create_issues_for_a_checked_caller(
    fields: v1.IssueFields | None,
    cc: list[str],
    blocking_ids: list[int],
    description: str,
    key: str,
) -> None:
    """``check_create_fields`` refuses what ``check_create_issue`` does once the caller passed."""
    request = v1.CreateIssueRequest(
        caller=v1.Caller(user_id="u-1", groups=["g"]),
        fields=fields,
        cc=cc,
        blocking_ids=blocking_ids,
        description=description,
        idempotency_key=key,
    )
    old = _outcome(_old_check_create_issue, request)
    assert _outcome(check.check_create_fields, request) == old
    assert _outcome(check.check_create_issue, request) == old
