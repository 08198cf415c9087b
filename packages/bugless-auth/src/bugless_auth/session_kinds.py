"""What kinds of session there are: how the built-in ones are recorded and listed.

The names a session's ``authenticator`` column holds for the sessions no
backend makes, their kind on the wire, and the kinds a listing may ask for:
read by the statements (:mod:`bugless_auth._session_queries`), the session
store and the gRPC calls alike.
"""

from __future__ import annotations

#: The ``authenticator`` of sessions opened with a people CA certificate.
PEOPLE_CA = "people-ca"
#: The ``authenticator`` of a service's assertion's session (``AuthService.issue_assertion``).
SERVICE = "service"
#: How the sessions no backend makes are recorded (their ``authenticator``),
#: and their kind on the wire (``Session.kind``). A backend's sessions have its kind.
BUILT_IN_KINDS = {PEOPLE_CA: "certificate", SERVICE: "service"}
#: What a listing of sessions may ask for (``ListSessionsRequest.kind``): all
#: of them, the user's own sign-ins ("people": password, single sign-on, client
#: certificates), or the sessions of services acting for them (``SERVICE``).
ALL_SESSIONS, PEOPLE, SERVICES = "all", "people", "services"
SESSION_KINDS = (ALL_SESSIONS, PEOPLE, SERVICES)
