"""``bugless.v1.Authenticator`` over gRPC: message shapes and limits, then the service.

Errors are mapped in one place (core's :func:`grpc_errors`): a bugless error
becomes its status with an ErrorInfo (and ``retry-after`` for throttling), any
other exception a logged INTERNAL without a traceback for the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from bugless_auth.people_rpcs import MAX_CERTIFICATE, MAX_TOKEN, PeopleRpcs, check_length
from bugless_auth.service import AuthService
from bugless_auth.session_kinds import ALL_SESSIONS, SESSION_KINDS
from bugless_auth.user_admin import MAX_SESSIONS_PAGE_SIZE
from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_core.grpc import AccessTable, current_identity, current_peer, grpc_errors
from bugless_proto import v1

#: Longest username, password or prefix accepted on the wire before any work.
_MAX_FIELD = limits.MAX_USER_REFERENCE_LENGTH
_MAX_PASSWORD = 1024
#: Longest session id accepted (the ids issued are 24 characters).
_MAX_SESSION_ID = 64
#: Mails of one notifier batch per call.
_MAX_UNSUBSCRIBE_TARGETS = limits.MAX_UNSUBSCRIBE_TARGETS


def _check_batch(values: Sequence[str], field: str) -> None:
    if len(values) > limits.MAX_USER_LOOKUP:
        raise InvalidArgument(
            f"{field}: at most {limits.MAX_USER_LOOKUP} per call, got {len(values)}; "
            "split the batch"
        )
    for value in values:
        if not value:
            raise InvalidArgument(f"{field}: empty entries are not allowed")
        check_length(value, field, _MAX_FIELD)


def _client_address(declared: str) -> str:
    """The end client's address: as the frontend declares it, else the peer's host."""
    if declared:
        return declared
    peer = current_peer()
    return peer.address[0] if peer is not None and peer.address is not None else ""


#: Services that look people up to show or resolve them.
_DIRECTORY_READERS = frozenset({"web", "api", "notify"})


class AuthenticatorServicer(PeopleRpcs, v1.AuthenticatorBase):
    """Serves ``bugless.v1.Authenticator`` from an :class:`AuthService`.

    Attributes:
        ACCESS: Which service identities may call each RPC (checked by the gRPC
            runtime before the handler runs; an RPC without a row is refused).
            Only the API runs the certificate flow (it passes the certificate
            its own TLS handshake verified); only the web runs the OIDC flow,
            and the password flow with the import job (``bugless import
            --user``, which signs in the person running it). Administrative
            calls also need ``manage_users`` on the token they carry;
            ``@admin`` are the identities the server's ``--admin-identities``
            names.
    """

    ACCESS: ClassVar[AccessTable] = {
        "ListAuthenticators": {"web", "api"},
        # ``bugless import --user NAME`` signs its operator in (their token
        # authorises the run); the import identity may act for anyone through
        # IssueAssertion already, so checking a password gives it nothing more.
        "AuthenticatePassword": {"web", "@import"},
        "BeginOidc": {"web"},
        "CompleteOidc": {"web"},
        "AuthenticateCertificate": {"api"},
        "ValidateToken": {"web", "api", "@import"},
        # ``bugless import --restricted-component`` names the people an
        # access list names (the Model's entries hold user ids only).
        "GetUsers": _DIRECTORY_READERS | {"@import"},
        "LookupUsers": _DIRECTORY_READERS,
        "SuggestUsers": {"web", "api"},
        # The web's access-list form says which groups nobody is in.
        "CountGroupMembers": {"web"},
        # ``bugless import --restricted-component`` compares components'
        # readers where their access lists name groups.
        "ListGroupMembers": {"@import"},
        # Whoever caches what GetUsers answers follows what changed.
        "GetUserChanges": _DIRECTORY_READERS,
        "Authorize": _DIRECTORY_READERS,
        "CreateLocalUser": {"web", "@admin"},
        "SetLocalPassword": {"web", "@admin"},
        "SetUserDisabled": {"web", "@admin"},
        "RevokeSessions": {"web", "@admin"},
        # The sessions page (each needs the caller's token; another user's
        # sessions need manage_users on it), and an administrator's tool.
        "ListSessions": {"web", "@admin"},
        "EndSession": {"web", "@admin"},
        # The import job (``bugless import``), as --import-identities names it;
        # it also validates the token of the person running it (above).
        "MatchImportUsers": {"@import"},
        "MergePlaceholder": {"web", "@admin"},
        # The people CA (issue 19): the web for signed-in people (the API page,
        # device approval, the device endpoints `bugless login` talks to);
        # the API revokes the certificate it was shown (`bugless logout`).
        "IssuePersonCertificate": {"web"},
        "ListPersonCertificates": {"web"},
        "RevokePersonCertificate": {"web", "api"},
        "StartDeviceLogin": {"web"},
        "GetDeviceLogin": {"web"},
        "ApproveDeviceLogin": {"web"},
        "PollDeviceLogin": {"web"},
        # The Model verifies identity assertions with these keys; so does the
        # notifier, for who manages a component's webhooks.
        "GetVerificationKeys": {"model", "notify"},
        # The Model judges whether people an issue names can view its
        # component (CheckViewers); nobody else learns others' groups.
        "GetUserGroups": {"model"},
        # A service acting for a user without their session: the notifier
        # reading as a recipient, an import job, an administrator's tool.
        "IssueAssertion": {"notify", "@import", "@admin"},
        # One-click unsubscribe links (bugless_auth.unsubscribe): the notifier
        # has them signed for its mails, the web redeems one for the mute.
        "IssueUnsubscribeTokens": {"notify"},
        "RedeemUnsubscribeToken": {"web"},
    }

    def __init__(self, service: AuthService) -> None:
        """Serve ``service``; it must already be open."""
        self.service = service

    @grpc_errors
    async def list_authenticators(
        self, message: v1.ListAuthenticatorsRequest
    ) -> v1.ListAuthenticatorsResponse:
        """The enabled backends, in the order password checks try them."""
        return v1.ListAuthenticatorsResponse(authenticators=self.service.list_authenticators())

    @grpc_errors
    async def authenticate_password(
        self, message: v1.AuthenticatePasswordRequest
    ) -> v1.AuthenticationResult:
        """Username and password to an identity and a session token."""
        if not message.username:
            raise InvalidArgument("username: required")
        check_length(message.username, "username", _MAX_FIELD)
        check_length(message.password, "password", _MAX_PASSWORD)
        check_length(message.client_address, "client_address", _MAX_FIELD)
        result = await self.service.authenticate_password(
            message.username, message.password, _client_address(message.client_address)
        )
        return result.to_message()

    @grpc_errors
    async def begin_oidc(self, message: v1.BeginOidcRequest) -> v1.BeginOidcResponse:
        """Start an OIDC browser flow."""
        if not message.redirect_uri:
            raise InvalidArgument("redirect_uri: required")
        url, state = await self.service.begin_oidc(message.authenticator, message.redirect_uri)
        return v1.BeginOidcResponse(authorization_url=url, flow_state=state)

    @grpc_errors
    async def complete_oidc(self, message: v1.CompleteOidcRequest) -> v1.AuthenticationResult:
        """Finish an OIDC browser flow."""
        for field in ("flow_state", "code", "state", "redirect_uri"):
            if not getattr(message, field):
                raise InvalidArgument(f"{field}: required")
        check_length(message.flow_state, "flow_state", MAX_TOKEN)
        check_length(message.client_address, "client_address", _MAX_FIELD)
        result = await self.service.complete_oidc(
            message.authenticator,
            message.flow_state,
            message.code,
            message.state,
            message.redirect_uri,
            client_address=_client_address(message.client_address),
        )
        return result.to_message()

    @grpc_errors
    async def authenticate_certificate(
        self, message: v1.AuthenticateCertificateRequest
    ) -> v1.AuthenticationResult:
        """A verified client certificate to an identity and a session token."""
        if not message.certificate_der:
            raise InvalidArgument("certificate_der: required")
        check_length(message.certificate_der, "certificate_der", MAX_CERTIFICATE)
        result = await self.service.authenticate_certificate(message.certificate_der)
        return result.to_message()

    @grpc_errors
    async def validate_token(self, message: v1.ValidateTokenRequest) -> v1.Identity:
        """The identity behind a session token (cached)."""
        check_length(message.token, "token", MAX_TOKEN)
        return await self.service.validate_token(message.token, with_assertion=True)

    @grpc_errors
    async def get_users(self, message: v1.GetUsersRequest) -> v1.UsersResponse:
        """Users by id, at most MAX_USER_LOOKUP."""
        _check_batch(message.user_ids, "user_ids")
        return await self.service.get_users(message.user_ids)

    @grpc_errors
    async def lookup_users(self, message: v1.LookupUsersRequest) -> v1.UsersResponse:
        """Users by username, at most MAX_USER_LOOKUP."""
        _check_batch(message.usernames, "usernames")
        return await self.service.lookup_users(message.usernames)

    @grpc_errors
    async def get_user_changes(self, message: v1.GetUserChangesRequest) -> v1.UserChanges:
        """The users changed after a version of the users' change feed."""
        if message.after_version < 0:
            raise InvalidArgument(
                f"after_version: 0 (the head) or a version, got {message.after_version}"
            )
        return await self.service.get_user_changes(message.after_version)

    @grpc_errors
    async def suggest_users(self, message: v1.SuggestUsersRequest) -> v1.UsersResponse:
        """Users whose username, display name or email starts with the prefix."""
        if not message.prefix:
            raise InvalidArgument("prefix: required (at least one character)")
        check_length(message.prefix, "prefix", _MAX_FIELD)
        if not 0 <= message.limit <= limits.MAX_SUGGEST_USERS:
            raise InvalidArgument(
                f"limit: between 0 and {limits.MAX_SUGGEST_USERS}, got {message.limit}"
            )
        return await self.service.suggest_users(message.prefix, message.limit or 10)

    @grpc_errors
    async def count_group_members(
        self, message: v1.CountGroupMembersRequest
    ) -> v1.CountGroupMembersResponse:
        """How many enabled users each named group has (0: nobody, or nobody yet)."""
        _check_group_names(message.groups)
        return await self.service.count_group_members(message.groups)

    @grpc_errors
    async def list_group_members(
        self, message: v1.ListGroupMembersRequest
    ) -> v1.ListGroupMembersResponse:
        """Who each named group has, by user id, as the store knows them."""
        _check_group_names(message.groups)
        return await self.service.list_group_members(message.groups)

    @grpc_errors
    async def get_user_groups(self, message: v1.GetUserGroupsRequest) -> v1.GetUserGroupsResponse:
        """People's groups and admin permission by id, at most MAX_VIEWER_CHECK (the Model)."""
        if len(message.user_ids) > limits.MAX_VIEWER_CHECK:
            raise InvalidArgument(
                f"user_ids: at most {limits.MAX_VIEWER_CHECK} per call, "
                f"got {len(message.user_ids)}; split the batch"
            )
        _check_batch(message.user_ids, "user_ids")
        return await self.service.user_groups(message.user_ids)

    @grpc_errors
    async def authorize(self, message: v1.AuthorizeRequest) -> v1.AuthorizeResponse:
        """Whether an identity holds a global permission, and which rule grants it."""
        if not message.permission:
            raise InvalidArgument("permission: required (e.g. admin, create_component)")
        if not message.token and not message.user_id:
            raise InvalidArgument("identity: set token, or user_id (with groups)")
        check_length(message.token, "token", MAX_TOKEN)
        decision = await self.service.authorize(
            message.token, message.user_id, message.groups, message.permission
        )
        return v1.AuthorizeResponse(allowed=decision.allowed, granted_by=decision.granted_by)

    @grpc_errors
    async def create_local_user(self, message: v1.CreateLocalUserRequest) -> v1.User:
        """Add a local user (manage_users)."""
        check_length(message.password, "password", _MAX_PASSWORD)
        check_length(message.display_name, "display_name", limits.MAX_NAME_LENGTH)
        check_length(message.email, "email", _MAX_FIELD)
        return await self.service.create_local_user(
            message.token,
            username=message.username,
            display_name=message.display_name,
            email=message.email,
            password=message.password,
            groups=message.groups,
        )

    @grpc_errors
    async def set_local_password(self, message: v1.SetLocalPasswordRequest) -> v1.User:
        """Change a local password (one's own, or anyone's with manage_users)."""
        if not message.username:
            raise InvalidArgument("username: required")
        check_length(message.password, "password", _MAX_PASSWORD)
        return await self.service.set_local_password(
            message.token, message.username, message.password
        )

    @grpc_errors
    async def set_user_disabled(self, message: v1.SetUserDisabledRequest) -> v1.User:
        """Disable or re-enable a user (manage_users)."""
        if not message.username:
            raise InvalidArgument("username: required")
        return await self.service.set_user_disabled(
            message.token, message.username, message.disabled
        )

    @grpc_errors
    async def match_import_users(
        self, message: v1.MatchImportUsersRequest
    ) -> v1.MatchImportUsersResponse:
        """Match an imported tracker's people to accounts (import_issues)."""
        if len(message.people) > limits.MAX_USER_LOOKUP:
            raise InvalidArgument(
                f"people: at most {limits.MAX_USER_LOOKUP} per call, got {len(message.people)}"
            )
        for i, person in enumerate(message.people):
            check_length(person.username, f"people[{i}].username", _MAX_FIELD)
            check_length(person.email, f"people[{i}].email", _MAX_FIELD)
            check_length(person.display_name, f"people[{i}].display_name", limits.MAX_NAME_LENGTH)
        return await self.service.match_import_users(
            message.token,
            message.source,
            message.people,
            create_placeholders=message.create_placeholders,
        )

    @grpc_errors
    async def merge_placeholder(self, message: v1.MergePlaceholderRequest) -> v1.User:
        """Map a placeholder account to a real one (manage_users)."""
        if not message.placeholder or not message.into:
            raise InvalidArgument("placeholder and into: both usernames are required")
        check_length(message.placeholder, "placeholder", _MAX_FIELD)
        check_length(message.into, "into", _MAX_FIELD)
        return await self.service.merge_placeholder(
            message.token, message.placeholder, message.into
        )

    @grpc_errors
    async def revoke_sessions(self, message: v1.RevokeSessionsRequest) -> v1.RevokeSessionsResponse:
        """End the token's session, all of its user's, or all of another user's."""
        if not message.token:
            raise InvalidArgument("token: required (the caller's own session token)")
        check_length(message.token, "token", MAX_TOKEN)
        check_length(message.username, "username", _MAX_FIELD)
        if message.username and message.everywhere:
            raise InvalidArgument("everywhere: leave it unset when username is given")
        revoked = await self.service.revoke_sessions(
            message.token, everywhere=message.everywhere, username=message.username
        )
        return v1.RevokeSessionsResponse(revoked=revoked)

    @grpc_errors
    async def list_sessions(self, message: v1.ListSessionsRequest) -> v1.ListSessionsResponse:
        """The live sessions of the caller (or another user, with manage_users)."""
        if not message.token:
            raise InvalidArgument("token: required (the caller's own session token)")
        check_length(message.token, "token", MAX_TOKEN)
        check_length(message.username, "username", _MAX_FIELD)
        page = message.page or v1.PageRequest()
        if not 0 <= page.page_size <= MAX_SESSIONS_PAGE_SIZE:
            raise InvalidArgument(
                f"page.page_size: between 0 (the default, 50) and {MAX_SESSIONS_PAGE_SIZE}, "
                f"got {page.page_size}"
            )
        check_length(page.page_token, "page.page_token", MAX_TOKEN)
        kind = message.kind or ALL_SESSIONS
        if kind not in SESSION_KINDS:
            raise InvalidArgument(
                f"kind: {message.kind[:40]!r} is not one of {', '.join(SESSION_KINDS)} (empty: all)"
            )
        return await self.service.list_sessions(
            message.token,
            username=message.username,
            page_size=page.page_size,
            page_token=page.page_token,
            kind=kind,
        )

    @grpc_errors
    async def end_session(self, message: v1.EndSessionRequest) -> v1.EndSessionResponse:
        """End one session by id (the caller's own, or anyone's with manage_users)."""
        if not message.token:
            raise InvalidArgument("token: required (the caller's own session token)")
        if not message.session_id:
            raise InvalidArgument("session_id: required (a Session.session_id of ListSessions)")
        check_length(message.token, "token", MAX_TOKEN)
        check_length(message.session_id, "session_id", _MAX_SESSION_ID)
        return await self.service.end_session(message.token, message.session_id)

    @grpc_errors
    async def get_verification_keys(
        self, message: v1.GetVerificationKeysRequest
    ) -> v1.VerificationKeys:
        """The assertion keys, and the sessions ended within an assertion's lifetime."""
        return await self.service.verification_keys()

    @grpc_errors
    async def issue_assertion(self, message: v1.IssueAssertionRequest) -> v1.Identity:
        """An identity with an assertion for a user, for a service acting for them."""
        if not message.user_id:
            raise InvalidArgument("user_id: required")
        check_length(message.user_id, "user_id", _MAX_FIELD)
        return await self.service.issue_assertion(
            message.user_id, requested_by=f"service:{current_identity() or ''}"
        )

    @grpc_errors
    async def issue_unsubscribe_tokens(
        self, message: v1.IssueUnsubscribeTokensRequest
    ) -> v1.UnsubscribeTokens:
        """A one-click unsubscribe token per (person, issue), in the request's order."""
        if len(message.targets) > _MAX_UNSUBSCRIBE_TARGETS:
            raise InvalidArgument(
                f"targets: at most {_MAX_UNSUBSCRIBE_TARGETS} per call, not {len(message.targets)}"
            )
        for index, target in enumerate(message.targets):
            if not target.user_id:
                raise InvalidArgument(f"targets[{index}].user_id: required")
            check_length(target.user_id, f"targets[{index}].user_id", _MAX_FIELD)
            if target.issue_id < 1:
                raise InvalidArgument(f"targets[{index}].issue_id: must be a positive issue id")
        return v1.UnsubscribeTokens(tokens=self.service.unsubscribe_tokens(message.targets))

    @grpc_errors
    async def redeem_unsubscribe_token(
        self, message: v1.RedeemUnsubscribeTokenRequest
    ) -> v1.UnsubscribeGrant:
        """What an unsubscribe token grants, and the person's assertion unless check_only."""
        if not message.token:
            raise InvalidArgument("token: required")
        check_length(message.token, "token", MAX_TOKEN)
        return await self.service.redeem_unsubscribe(message.token, check_only=message.check_only)


def _check_group_names(groups: list[str]) -> None:
    """Refuse more names than an access list holds, an empty one, or an over-long one."""
    if len(groups) > limits.MAX_ACL_ENTRIES:
        raise InvalidArgument(
            f"groups: at most {limits.MAX_ACL_ENTRIES} (an access list's entries), "
            f"got {len(groups)}"
        )
    for index, group in enumerate(groups):
        if not group:
            raise InvalidArgument(f"groups[{index}]: empty; give a group name")
        check_length(group, f"groups[{index}]", _MAX_FIELD)
