"""The names placeholders of imported people get: one rule for the Authenticator and the dry run."""

from __future__ import annotations

from bugless_core.usernames import placeholder_username


def test_accents_are_dropped_rather_than_made_dashes() -> None:
    # Before: "j-rgen@trac", "m-ller@trac".
    assert placeholder_username("trac", username="jürgen") == "jurgen@trac"
    assert placeholder_username("trac", username="Zoë.Müller") == "Zoe.Muller@trac"


def test_the_login_then_the_address_then_the_key_name_the_placeholder() -> None:
    assert placeholder_username("trac", username="ann", email="x@y.org", key="k") == "ann@trac"
    assert placeholder_username("trac", email="dave@example.net", key="d") == "dave@trac"
    assert placeholder_username("trac", key="dave@example.net") == "dave-example.net@trac"


def test_what_no_username_holds_is_a_dash_and_nothing_left_is_someone() -> None:
    assert placeholder_username("jira", username="Ann Lee (QA)") == "Ann-Lee-QA@jira"
    assert placeholder_username("jira", username="李四") == "someone@jira"
    assert placeholder_username("jira", username="ann", attempt=3) == "ann@jira.3"
    assert len(placeholder_username("jira", username="a" * 500)) == 120
