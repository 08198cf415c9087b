"""A loopback Redmine REST API over a directory of Redmine's own JSON.

It answers the requests the importer makes the way Redmine does: an
``X-Redmine-API-Key`` header or 401; ``/issues.json`` paginated by
``limit``/``offset`` with ``total_count`` (``limit`` capped like a Redmine
whose "objects per page" limit is low), only open issues unless
``status_id=*``, only one project's issues with ``project_id``; a
project's categories at ``/projects/ID/issue_categories.json`` (by id or
identifier; the tree's ``issue_categories.json`` holds every project's); an issue's
journals, watchers, attachments and relations only when ``include`` asks for them,
each attachment with the ``content_url`` Redmine builds from its "Host
name" setting (``host``; the server's own address by default), and its bytes
at ``/attachments/download/ID/FILENAME`` from the tree's
``attachments/ID/FILENAME`` (with the key, like the JSON); ``/users.json``
paginated, or 403 as for a key of a non-administrator; ``redirects``: a 302
for a path, to wherever the test says.

It can also misbehave the way a real one does now and then: ``failures``
answers a path's first N requests with an error status (and ``Retry-After:
0``), as a restarting server or a proxy does; ``gone`` lists issues in
``/issues.json`` but answers 404 for their own JSON, as for an issue deleted
between the listing and the read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

PROJECT = "rocket"
#: The numeric id of ``PROJECT``, as issues and categories name it.
PROJECT_ID = 1


@dataclass
class Redmine:
    """What the server serves and how; ``requests`` logs every path with its query."""

    root: Path
    key: str
    cap: int = 2
    users_forbidden: bool = False
    requests: list[str] = field(default_factory=list)
    url: str = ""
    #: Path (without query) -> [status, how many more times to answer it].
    failures: dict[str, list[int]] = field(default_factory=dict)
    #: Issue ids listed but answering 404 when read.
    gone: set[int] = field(default_factory=set)
    #: Redmine's "Host name" setting, the base of ``content_url`` ("": ``url``).
    host: str = ""
    #: Path (without query) -> where a 302 sends it (after the key is checked),
    #: as a Redmine behind a file store or a proxy does.
    redirects: dict[str, str] = field(default_factory=dict)
    #: Project ids besides ``PROJECT_ID`` (their categories are those of
    #: ``issue_categories.json`` that name them).
    projects: set[int] = field(default_factory=set)
    #: Project ids whose categories answer 403, as for a key not let see them.
    forbidden_projects: set[int] = field(default_factory=set)


def _page(items: list[Any], key: str, query: dict[str, str], cap: int) -> dict[str, Any]:
    limit = min(int(query.get("limit", "25")), cap)
    offset = int(query.get("offset", "0"))
    return {
        key: items[offset : offset + limit],
        "total_count": len(items),
        "offset": offset,
        "limit": limit,
    }


def _handler(redmine: Redmine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not a web server's log."""

        def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            if code in {429, 503}:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, name: str) -> Any:
            return json.loads((redmine.root / name).read_text(encoding="utf-8"))

        def do_GET(self) -> None:
            redmine.requests.append(self.path)
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            failing = redmine.failures.get(path)
            if failing and failing[1] > 0:
                failing[1] -= 1
                self._send(failing[0], b"", "text/plain")
                return
            if path.startswith("/html/"):
                self._send(200, b"<html><body>Redmine 5.1</body></html>", "text/html")
                return
            if self.headers.get("X-Redmine-API-Key") != redmine.key:
                self._send(401, b"", "text/plain")
                return
            if path in redmine.redirects:
                self.send_response(302)
                self.send_header("Location", redmine.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path.startswith("/attachments/download/"):
                number, _, name = path.removeprefix("/attachments/download/").partition("/")
                file = redmine.root / "attachments" / number / unquote(name)
                if number.isdigit() and file.is_file():
                    self._send(200, file.read_bytes(), "application/octet-stream")
                else:
                    self._send(404, b"", "text/plain")
                return
            answer = self._answer(path, query)
            if answer is None:
                self._send(404, b"", "text/plain")
            elif isinstance(answer, int):
                self._send(answer, b"", "text/plain")
            else:
                self._send(200, json.dumps(answer).encode())

        def _answer(self, path: str, query: dict[str, str]) -> Any:
            lists = {
                "/issue_statuses.json": "issue_statuses.json",
                "/trackers.json": "trackers.json",
                "/enumerations/issue_priorities.json": "issue_priorities.json",
            }
            if path in lists:
                return self._file(lists[path])
            if path.startswith("/projects/") and path.endswith("/issue_categories.json"):
                return self._categories(path.split("/")[2])
            if path == "/issues.json":
                if query.get("project_id", PROJECT) != PROJECT:
                    return None
                issues = [
                    self._file(f"issues/{p.name}")["issue"]
                    for p in sorted(
                        (redmine.root / "issues").glob("*.json"), key=lambda p: int(p.stem)
                    )
                ]
                if query.get("status_id") != "*":  # Redmine's default: open issues only
                    issues = [i for i in issues if not i["status"].get("is_closed")]
                for issue in issues:
                    for part in ("journals", "watchers", "attachments", "relations"):
                        issue.pop(part, None)
                return _page(issues, "issues", query, redmine.cap)
            if path.startswith("/issues/") and path.endswith(".json"):
                name = path.removeprefix("/")
                gone = int(name.removeprefix("issues/").removesuffix(".json")) in redmine.gone
                if gone or not (redmine.root / name).is_file():
                    return None
                data = self._file(name)
                include = query.get("include", "").split(",")
                for part in ("journals", "watchers", "attachments", "relations"):
                    if part not in include:
                        data["issue"].pop(part, None)
                for attachment in data["issue"].get("attachments", []):
                    attachment["content_url"] = (
                        f"{redmine.host or redmine.url}attachments/download/"
                        f"{attachment['id']}/{quote(attachment['filename'])}"
                    )
                return data
            if path == "/users.json":
                if redmine.users_forbidden:
                    return 403
                return _page(self._file("users.json")["users"], "users", query, redmine.cap)
            return None

        def _categories(self, project: str) -> Any:
            """A project's categories (by identifier or id) as Redmine lists them, or 404."""
            number = PROJECT_ID if project == PROJECT else int(project) if project.isdigit() else 0
            if number in redmine.forbidden_projects:
                return 403
            if number not in {PROJECT_ID, *redmine.projects}:
                return None
            everything = self._file("issue_categories.json")["issue_categories"]
            own = [c for c in everything if c["project"]["id"] == number]
            return {"issue_categories": own, "total_count": len(own)}

    return Handler


@contextmanager
def serve(redmine: Redmine) -> Iterator[Redmine]:
    """Serve ``redmine`` on a loopback port of the server's choosing, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(redmine))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    redmine.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield redmine
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
