"""The session cookie: signed and encrypted, so the web tier keeps no state.

The cookie holds what a replica needs to serve the next request and nothing
it could leak: the Authenticator's session token, the CSRF secret, a pending
OIDC flow and a one-shot notice. It is sealed with Fernet (AES-128-CBC +
HMAC-SHA256) under a list of keys: the first seals, all of them open, which is
how keys rotate without signing everybody out. A cookie that fails to open
(tampered, too old, sealed with a retired key) is treated as no session at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

#: Cookie name when Secure is on: the ``__Host-`` prefix makes the browser
#: refuse it unless it is Secure, host-only and Path=/ (no subdomain injection).
SECURE_COOKIE_NAME = "__Host-bugless"
#: Cookie name in ``--dev`` (plain HTTP on localhost cannot use ``__Host-``).
DEV_COOKIE_NAME = "bugless_session"
#: Most cookies whose opened contents are kept (oldest forgotten first).
OPENED_CACHE_SIZE = 10_000


def _fernet_key(secret: str) -> bytes:
    """A Fernet key derived from an operator-chosen secret of any length."""
    digest = hashlib.sha256(b"bugless-web-session\0" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@dataclass
class Session:
    """What one browser's cookie says.

    The session itself lives in the Authenticator (a row named by the
    token's ``jti``): the cookie only carries the signed token that refers
    to it, so ending the session there ends it for every copy of the cookie.

    Attributes:
        token: The Authenticator's session token; empty when signed out.
        csrf: Secret every state-changing request must echo (synchronizer
            token bound to this session).
        oidc_state: ``flow_state`` of an OIDC sign-in in progress.
        oidc_authenticator: Which OIDC backend the flow is with.
        return_to: Local URL to land on after sign-in.
        notice: A one-shot message shown on the next page ("Saved search ...").
        warning: A one-shot warning shown on the next page, apart from the
            notice ("bob cannot view component X: ..." after a save).
    """

    token: str = ""
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    oidc_state: str = ""
    oidc_authenticator: str = ""
    return_to: str = ""
    notice: str = ""
    warning: str = ""
    modified: bool = field(default=False, compare=False, repr=False)
    fresh: bool = field(default=False, compare=False, repr=False)
    #: Set when the request was refused as forged (CSRF): its response must
    #: not set the cookie at all, or any site could replace a person's
    #: session with an anonymous one (a forced sign-out).
    leave_cookie: bool = field(default=False, compare=False, repr=False)

    def update(self, **changes: Any) -> None:
        """Change fields and mark the cookie for re-sealing."""
        for name, value in changes.items():
            if name not in _FIELDS:
                msg = f"no session field {name!r}"
                raise AttributeError(msg)
            setattr(self, name, value)
        self.modified = True

    def pop_notice(self) -> str:
        """The one-shot notice, cleared so the next page does not repeat it."""
        notice = self.notice
        if notice:
            self.update(notice="")
        return notice

    def pop_warning(self) -> str:
        """The one-shot warning, cleared so the next page does not repeat it."""
        warning = self.warning
        if warning:
            self.update(warning="")
        return warning

    def sign_out(self) -> None:
        """Forget the identity and rotate the CSRF secret (no fixation)."""
        self.update(
            token="",
            csrf=secrets.token_urlsafe(24),
            oidc_state="",
            oidc_authenticator="",
            return_to="",
        )


class SessionCodec:
    """Seals and opens session cookies with a rotation list of keys."""

    def __init__(
        self,
        keys: tuple[str, ...],
        *,
        max_age_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            msg = "at least one session key is needed"
            raise ValueError(msg)
        self._fernet = MultiFernet([Fernet(_fernet_key(k)) for k in keys])
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        #: Cookies opened before, by value: their fields and when they stop opening.
        self._opened: OrderedDict[str, tuple[dict[str, str], float]] = OrderedDict()

    def seal(self, session: Session) -> str:
        """The cookie value for ``session`` (sealed with the newest key)."""
        data = {k: v for k, v in asdict(session).items() if k in _FIELDS and v}
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def open(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None when it is absent, forged or expired."""
        if not cookie:
            return None
        fields = self._open_fields(cookie)
        if fields is None:
            return None
        # Not Session(): its default CSRF secret costs a urandom read and
        # was thrown away whenever the cookie has one (always, once sealed).
        session = Session(csrf="")
        for key, value in fields.items():
            setattr(session, key, value)
        if "csrf" not in fields:
            session.csrf = secrets.token_urlsafe(24)
        elif not session.csrf:
            session.update(csrf=secrets.token_urlsafe(24))
        return session

    def _open_fields(self, cookie: str) -> dict[str, str] | None:
        """The session fields ``cookie`` holds, None when it does not open (now).

        A browser sends the same cookie with every request until something
        in it changes, and each used to be decrypted and its HMAC checked
        again (Fernet, ~2 % of the web tier's CPU on a list page). What a
        cookie opened to is kept by its value until the cookie's age passes
        ``max_age_seconds``, the moment Fernet would refuse it; a cookie
        that does not open is not kept (it is checked again every time).
        """
        now = self._clock()
        kept = self._opened.get(cookie)
        if kept is not None and kept[1] >= now:
            return kept[0]
        token = cookie.encode()
        try:
            data = json.loads(
                self._fernet.decrypt_at_time(token, ttl=self.max_age_seconds, current_time=int(now))
            )
            sealed_at = self._fernet.extract_timestamp(token)
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        fields = {k: str(v) for k, v in data.items() if k in _FIELDS}
        self._opened[cookie] = (fields, sealed_at + self.max_age_seconds)
        self._opened.move_to_end(cookie)
        while len(self._opened) > OPENED_CACHE_SIZE:
            self._opened.popitem(last=False)
        return fields

    def seal_value(self, kind: str, data: dict[str, Any]) -> str:
        """``data`` sealed as a token of ``kind`` (never readable as another kind or a cookie)."""
        payload = {"kind": kind, "data": data}
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open_value(self, kind: str, token: str, *, max_age_seconds: int) -> dict[str, Any] | None:
        """The data of a :meth:`seal_value` token of ``kind``; None if forged, other or expired."""
        try:
            payload = json.loads(self._fernet.decrypt(token.encode(), ttl=max_age_seconds))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(payload, dict) or payload.get("kind") != kind:
            return None
        data = payload.get("data")
        return data if isinstance(data, dict) else None


_FIELDS = frozenset(
    {"token", "csrf", "oidc_state", "oidc_authenticator", "return_to", "notice", "warning"}
)
