"""Reading answers that carry no bugless error, for :func:`bugless_core.errors.from_grpc_error`.

A bugless server's refusal carries its ErrorInfo, and errors.py maps its
status and reason to a class. Other answers are read from the message alone,
and these rules do it: the words grpclib's client uses for what was not gRPC
(a proxy's ``Received :status = '502'``, a 200 of another content type), and
for an early release's bare answer to a method it does not serve ("Missing
content-type header"), and a later release's UNIMPLEMENTED naming the method
it does not serve. They live apart from the hierarchy because they follow
grpclib's wording and the releases' history, not the statuses bugless sends;
``from_grpc_error`` asks them after the reasons and before the status map.
"""

from __future__ import annotations

import re

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.errors import MethodNotServed, Unavailable

#: What a bugless server says of a method it does not serve (``unserved_message``).
_UNSERVED = re.compile(r"method /bugless\.v1\.(\w+)/(\w+) is not served by this server")
#: What grpclib's client makes of a grpclib server's bare answer to a method it
#: does not serve (releases before 474983f6 answered so): HTTP 200 with
#: grpc-status 12 and no content type. The client reads ``:status`` first, so
#: this is always a 200: a proxy's error page (a 502) is :data:`_HTTP_STATUS`.
_NO_CONTENT_TYPE = "Missing content-type header"
#: grpclib's client on an HTTP status other than 200 (502 is UNAVAILABLE, 404
#: UNIMPLEMENTED, ...): no gRPC server answers so, a proxy in between does.
_HTTP_STATUS = re.compile(r"Received :status = '(\d+)'")
#: ... and of a 200 whose content type is not gRPC's (a proxy's HTML page).
_NOT_GRPC_TYPE = re.compile(r"Invalid content-type: '(?!application/grpc)(.*)'")
#: A grpclib server's answers to a method it does not serve, as a grpclib client
#: reads them: bare headers (above), or, with the content type, its own words.
_BARE_NOT_FOUND = frozenset(
    {(Status.UNKNOWN, _NO_CONTENT_TYPE), (Status.UNIMPLEMENTED, "Method not found")}
)
#: A call's route: its service and method (a bare answer's, which names neither).
_ROUTE = re.compile(r"/bugless\.v1\.(\w+)/(\w+)")
#: The servers by the ``bugless.v1`` services they serve; any other is the API's.
_SERVERS = {"Model": "Model", "Authenticator": "Authenticator", "Notifier": "notifier"}


def not_grpc_answer(error: GRPCError, route: str) -> Unavailable | None:
    """:class:`Unavailable` if the answer was HTTP but not gRPC; None otherwise.

    A proxy or load balancer answering for a server (an HTML 502 page, a 404
    for a route it does not know) is an outage where the server is reached,
    never an older release to upgrade: its 404 is no UNIMPLEMENTED, its 401
    not the caller's session.
    """
    message = error.message or ""
    status = _HTTP_STATUS.fullmatch(message)
    typed = _NOT_GRPC_TYPE.fullmatch(message)
    if status is not None:
        what, metadata = f"HTTP {status.group(1)}", {"http_status": status.group(1)}
    elif typed is not None:
        what, metadata = f"content type {typed.group(1)!r}", {}
    else:
        return None
    named = _ROUTE.fullmatch(route)
    who = (
        f"the {_SERVERS.get(named.group(1), 'API')} (called for {named.group(2)})"
        if named
        else "the server called"
    )
    return Unavailable(
        f"{who} answered {what}, not gRPC: a proxy or load balancer in between? "
        "Check what listens at its address",
        metadata=metadata,
    )


def method_not_served_answer(error: GRPCError, route: str = "") -> MethodNotServed | None:
    """The :class:`MethodNotServed` ``error`` stands for; None if it is no such answer.

    Another UNIMPLEMENTED (an older Model refusing a backend capability
    without :class:`~bugless_core.errors.CapabilityMissing`'s reason) is not one: its server
    serves the method and says why it cannot. A bare answer names no method:
    the call's ``route``, when the caller gave it, does.
    """
    named = _UNSERVED.match(error.message or "") if error.status is Status.UNIMPLEMENTED else None
    if named is None and (error.status, error.message) in _BARE_NOT_FOUND:
        named = _ROUTE.fullmatch(route)
        if named is None:
            return MethodNotServed(
                "the server called does not serve the method (it answered as servers of "
                "early releases do, without naming it), so it is of a release older than "
                "its caller's: upgrade it first, as docs/upgrades.md orders"
            )
    if named is None:
        return None
    service, method = named.groups()
    server = _SERVERS.get(service, "API")
    return MethodNotServed(
        f"the {server} does not serve {method}, so it is of a release older than "
        f"its caller's: upgrade the {server} first, as docs/upgrades.md orders",
        metadata={"service": f"bugless.v1.{service}", "method": method},
    )
