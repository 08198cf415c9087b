"""Which calls only read: the one table of the services' read RPCs.

A call that only reads may run twice with no effect a person would see, so
two rules rest on it:

* the web tries a read once more when a replica went away mid-call
  (``bugless_web.retries``), where a write is tried again only when it
  provably never ran;
* the API tells a bot to make a request again at once (``SESSION_RENEWED``)
  only when nothing else the request sent may have written
  (:func:`bugless_core.call_tally.refused_alone`): a look-up made first (a
  username for an assignee) is a read, and repeating it is harmless.

A read here may record something no reader sees twice (``ListSessions``
records the token's last use; ``IssueAssertion`` and
``RedeemUnsubscribeToken`` start a short session, as any retry of them would).
Every unary RPC of the Model, the Authenticator and the notifier is either in
:data:`READ_ROUTES` or a write (bugless-web's ``test_retries`` checks that
each is classified); a new RPC is a write until its author lists it here.
"""

from __future__ import annotations

#: Calls that only read, so running one twice is harmless.
READ_ROUTES = frozenset(
    {
        "/bugless.v1.Model/GetServerInfo",
        "/bugless.v1.Model/GetIssue",
        "/bugless.v1.Model/ListCustomFields",
        "/bugless.v1.Model/BatchGetIssues",
        "/bugless.v1.Model/ListHistory",
        "/bugless.v1.Model/SearchIssues",
        "/bugless.v1.Model/GetComponent",
        "/bugless.v1.Model/ListComponents",
        "/bugless.v1.Model/CheckViewers",
        "/bugless.v1.Model/GetHotlist",
        "/bugless.v1.Model/ListHotlists",
        "/bugless.v1.Model/ListHotlistItems",
        "/bugless.v1.Model/ListSavedSearches",
        "/bugless.v1.Model/ReadFeed",
        "/bugless.v1.Model/ListSubscriptions",
        "/bugless.v1.Model/GetNotificationSettings",
        "/bugless.v1.Model/GetIssueAudience",
        "/bugless.v1.Model/GetNotificationViews",
        "/bugless.v1.Model/ListSavedSearchSubscriptions",
        "/bugless.v1.Model/GetAttachment",
        "/bugless.v1.Model/ListAttachments",
        "/bugless.v1.Notifier/GetDeliveryStatus",
        "/bugless.v1.Notifier/ListComponentWebhooks",
        "/bugless.v1.Authenticator/ListAuthenticators",
        "/bugless.v1.Authenticator/ValidateToken",
        "/bugless.v1.Authenticator/GetUsers",
        "/bugless.v1.Authenticator/LookupUsers",
        "/bugless.v1.Authenticator/GetUserChanges",
        "/bugless.v1.Authenticator/SuggestUsers",
        "/bugless.v1.Authenticator/CountGroupMembers",
        "/bugless.v1.Authenticator/ListGroupMembers",
        "/bugless.v1.Authenticator/Authorize",
        "/bugless.v1.Authenticator/ListPersonCertificates",
        # Records the token's last use at most every few minutes: the same on a retry.
        "/bugless.v1.Authenticator/ListSessions",
        "/bugless.v1.Authenticator/GetDeviceLogin",
        # Checks a one-click unsubscribe token, or issues an assertion for its
        # person as IssueAssertion does (a session each time, as any retry of that).
        "/bugless.v1.Authenticator/RedeemUnsubscribeToken",
        # Never made by the web (the Model's and the services' calls), but reads.
        "/bugless.v1.Authenticator/GetVerificationKeys",
        "/bugless.v1.Authenticator/IssueAssertion",
        "/bugless.v1.Authenticator/IssueUnsubscribeTokens",
        "/bugless.v1.Authenticator/GetUserGroups",
    }
)
#: Server streams that only read: a download, a watch.
STREAM_READ_ROUTES = frozenset({"/bugless.v1.Model/DownloadAttachment", "/bugless.v1.Model/Watch"})


def only_reads(route: str) -> bool:
    """Whether the call of ``route`` (``/bugless.v1.Model/GetIssue``) only reads."""
    return route in READ_ROUTES or route in STREAM_READ_ROUTES


__all__ = ["READ_ROUTES", "STREAM_READ_ROUTES", "only_reads"]
