"""Where a Redmine import reads: a directory of exported REST JSON, or a live Redmine.

:class:`~bugless_import.sources.redmine.RedmineImporter` reads the export's
files by name (``issues/N.json``, ``trackers.json``, ``users.json`` ...)
through a :class:`Reader`: :class:`ExportReader` from a directory,
:class:`RestReader` from the REST API, which answers the same JSON, page by
page, with the API key sent to that Redmine only. Kept apart from turning
the JSON into issues, which is the same either way.
"""

from __future__ import annotations

import json
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from bugless_import.sources._http import (
    RETRYABLE_STATUSES,
    open_file,
    read_with_retries,
    secret_option,
)

#: Issues and users per request; Redmine caps it at its "limit" setting (100 by default).
PAGE = 100
#: Where each file of the export comes from over REST (issues/N.json aside).
ENDPOINTS = {
    "issue_statuses.json": "issue_statuses.json",
    "trackers.json": "trackers.json",
    "issue_priorities.json": "enumerations/issue_priorities.json",
}


class Reader(Protocol):
    """Where the JSON comes from: ``read(name)`` by the export's file names."""

    def issue_ids(self) -> list[int]:
        """Every issue's id, ascending."""
        ...

    def read(self, name: str) -> Any:
        """The JSON of the export's file ``name`` (None: the source has none)."""
        ...

    def content(self, attachment: dict[str, Any]) -> BinaryIO:
        """``attachment`` (an issue's ``attachments`` item) open to read; OSError if unreadable."""
        ...


class ExportReader:
    """A directory of exported REST JSON."""

    def __init__(self, location: str) -> None:
        self.root = Path(location)
        if not (self.root / "issues").is_dir():
            raise InvalidArgument(f"{location}: no issues/ directory of Redmine issue JSON")

    def issue_ids(self) -> list[int]:
        return sorted(int(p.stem) for p in (self.root / "issues").glob("*.json"))

    def read(self, name: str) -> Any:
        path = self.root / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: not JSON: {exc}") from exc

    def content(self, attachment: dict[str, Any]) -> BinaryIO:
        name = Path(str(attachment.get("filename") or "")).name  # no way out of the directory
        return (self.root / "attachments" / str(int(attachment["id"])) / name).open("rb")


class RestReader:
    """A live Redmine, through its REST API (the key, if any, in a header)."""

    def __init__(self, location: str, key: str, project: str, retries: int) -> None:
        self.base = location.rstrip("/") + "/"
        self.project = project
        self.retries = retries
        self.key = key

    def _request(self, url: str, accept: str) -> Request:
        """A GET of ``url`` with the key for this Redmine only, not where it redirects.

        urllib copies a request's headers onto the request a redirect makes,
        wherever it points (another host, a file store): the key rides as an
        unredirected header, which it does not copy.
        """
        request = Request(url, headers={"Accept": accept})
        if self.key:
            request.add_unredirected_header("X-Redmine-API-Key", self.key)
        return request

    def get(self, path: str, **query: object) -> Any:
        """GET ``path`` (relative to the base) as JSON; None on 403 for the users list."""
        url = self.base + path + ("?" + urlencode(query, safe="*,") if query else "")
        request = self._request(url, "application/json")

        def fetch() -> bytes:
            with urlopen(request, timeout=120) as response:
                body: bytes = response.read()
                return body

        try:
            body = read_with_retries(fetch, retries=self.retries)
        except HTTPError as exc:
            if exc.code == 401:
                why = (
                    "the API key was refused"
                    if self.key
                    else "it needs an API key (--option api-key-file=PATH or REDMINE_API_KEY)"
                )
                raise Unauthenticated(f"Redmine answered 401 for {url}: {why}") from exc
            if exc.code == 403:
                if path == "users.json":
                    return None  # only administrators may list users
                raise PermissionDenied(f"Redmine answered 403 for {url}") from exc
            if exc.code == 404:
                raise NotFound(f"Redmine answered 404 for {url}") from exc
            tried = f" ({self.retries + 1} attempts)" if exc.code in RETRYABLE_STATUSES else ""
            raise FailedPrecondition(f"Redmine answered {exc.code} for {url}{tried}") from exc
        except (URLError, OSError, HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"cannot reach Redmine at {url}: {reason}") from exc
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{url}: not JSON (is this a Redmine with REST on?)") from exc

    def pages(self, path: str, key: str, **query: object) -> list[dict[str, Any]] | None:
        """Every item of a paginated list, as ``total_count``/``offset`` say (None on 403)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, **query, limit=PAGE, offset=len(items))
            if page is None:
                return None
            batch = page.get(key) or []
            items.extend(batch)
            if not batch or len(items) >= int(page.get("total_count") or 0):
                return items

    def issue_ids(self) -> list[int]:
        query: dict[str, object] = {"status_id": "*", "sort": "id"}
        if self.project:
            query["project_id"] = self.project
        return sorted({int(i["id"]) for i in self.pages("issues.json", "issues", **query) or []})

    def content(self, attachment: dict[str, Any]) -> BinaryIO:
        """GET the attachment's ``content_url``, or LOCATION's download path if it lies elsewhere.

        The API key goes to LOCATION only: a ``content_url`` on another host
        (Redmine's "Host name" setting, often ``localhost:3000``) is not where
        the key belongs, nor is where LOCATION redirects a download.
        """
        url = str(attachment.get("content_url") or "")
        if not url.startswith(self.base):
            name = quote(str(attachment.get("filename") or ""))
            url = f"{self.base}attachments/download/{int(attachment['id'])}/{name}"
        request = self._request(url, "*/*")

        return open_file(request, source="Redmine", retries=self.retries)

    def read(self, name: str) -> Any:
        if name.startswith("issues/"):
            return self.get(name, include="journals,watchers,attachments,relations")
        if name.startswith("projects/"):  # projects/ID/issue_categories.json
            return self.get(name)
        if name == "issue_categories.json":
            if not self.project:
                return None
            return self.get(f"projects/{self.project}/issue_categories.json")
        if name == "users.json":
            users = self.pages("users.json", "users")
            return None if users is None else {"users": users}
        return self.get(ENDPOINTS[name])


def api_key(options: dict[str, str]) -> str:
    """The Redmine API key: ``--option api-key-file=PATH``'s content, or ``REDMINE_API_KEY``."""
    return secret_option(options, "api-key-file", "REDMINE_API_KEY")
