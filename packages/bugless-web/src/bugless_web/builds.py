"""Safe rollouts of incompatible web versions: build ids, compatibility, an asset archive.

During a rollout, replicas of two web versions serve one Ingress: a page
rendered by version N-1 may ask an N replica for its CSS and JavaScript,
post a form to it, call it from script or keep a live stream open to it. Two
mechanisms keep that from breaking anything:

* **Assets of earlier releases are served too.** Every release exports its
  hashed static files into an *asset archive* (``bugless web assets export``,
  run while the image is built, on top of the previous image's archive) that
  keeps the files of the last N releases; a replica serves a hashed name from
  its own files first, then from the archive.
* **Every request names the build of the page that made it.** A page carries
  its build id (``<meta name="bugless-build">``, a hidden ``_build`` field in
  each form, the ``X-Bugless-Build`` header on every script request, a
  ``_build`` parameter on event streams). The id is ``c<contract>-<digest>``:
  ``FORM_CONTRACT`` is bumped by hand whenever forms, routes or the script's
  expectations change incompatibly, and the digest changes with any asset.
  A replica that cannot serve a request from a build with another contract
  changes nothing and answers so that the page reloads once (script
  requests: ``409`` with ``X-Bugless-Reload``; forms: a page that gives the
  person back what they typed; streams: a ``reload`` event). The page's
  script remembers the build it reloaded for, so a reload that lands on an
  old replica again does not loop.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Bump when a form field, a route a page posts to, or what the script
#: expects from the server changes incompatibly: pages of another contract
#: are told to reload instead of being served.
FORM_CONTRACT = 1
#: Header and form field that carry the build id of the page making a request.
BUILD_HEADER = "x-bugless-build"
BUILD_FIELD = "_build"
#: Answer header telling the page's script to reload (once).
RELOAD_HEADER = "x-bugless-reload"
#: Releases an asset archive keeps by default (this one and the four before).
DEFAULT_KEEP = 5
MANIFEST = "manifest.json"
_BUILD_RE = re.compile(r"^c(\d{1,9})-([0-9a-f]{1,64})$")
#: What a hashed asset name may look like (no path separators, no dot-files).
_HASHED_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}$")


class StaleBuild(Exception):
    """A request from a page of a build this replica cannot serve.

    Attributes:
        theirs: The build id the request carried.
        ours: This replica's build id.
        fields: What a refused form carried (name, text), given back to the
            person so nothing they typed is lost.
    """

    def __init__(self, theirs: str, ours: str, fields: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"page build {theirs!r} cannot be served by build {ours!r}")
        self.theirs = theirs
        self.ours = ours
        self.fields = fields or []


def build_id(hashed_names: Iterable[str], contract: int = FORM_CONTRACT) -> str:
    """This version's build id: its form contract and a digest of its asset names."""
    digest = hashlib.sha256("\n".join(sorted(hashed_names)).encode()).hexdigest()[:12]
    return f"c{contract}-{digest}"


def contract_of(build: str) -> int | None:
    """The form contract a build id names, or None when it is not a build id."""
    match = _BUILD_RE.match(build)
    return int(match.group(1)) if match else None


def compatible(theirs: str | None, ours: str) -> bool:
    """Whether a request from a page of build ``theirs`` may be served by ``ours``.

    A request that names no build (a form posted without script by an old
    client, curl) is served as before: there is nothing to compare. A value
    that is not a build id is treated as another contract.
    """
    if not theirs:
        return True
    return contract_of(theirs) == contract_of(ours)


def safe_hashed_name(name: str) -> bool:
    """Whether ``name`` may name a file of the archive (no traversal, no separators)."""
    return bool(_HASHED_NAME_RE.match(name)) and ".." not in name


@dataclass(frozen=True)
class ExportResult:
    """What ``export_assets`` did.

    Attributes:
        written: Hashed file names this release added.
        removed: Files removed because only pruned releases named them.
        releases: Build ids the archive now keeps, newest first.
    """

    written: list[str]
    removed: list[str]
    releases: list[str]


def export_assets(
    build: str, files: Mapping[str, bytes], directory: Path, *, keep: int = DEFAULT_KEEP
) -> ExportResult:
    """Add one release's hashed files to an asset archive and prune old releases.

    The manifest (``manifest.json``) lists releases newest first with their
    files; a file stays while any kept release names it (an unchanged file
    keeps its hashed name across releases).

    Args:
        build: This release's build id.
        files: Hashed name -> content.
        directory: The archive (created when missing).
        keep: How many releases (this one included) to keep.

    Raises:
        ValueError: ``keep`` is below 1, or a name is not a safe file name.
    """
    if keep < 1:
        raise ValueError("--keep must be at least 1 (this release)")
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    releases: list[dict[str, object]] = []
    if manifest_path.exists():
        loaded = json.loads(manifest_path.read_text())
        releases = [r for r in loaded.get("releases", []) if r.get("build") != build]
    written = []
    for name, content in sorted(files.items()):
        if not safe_hashed_name(name):
            raise ValueError(f"unsafe asset name {name!r}")
        path = directory / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            written.append(name)
    releases.insert(0, {"build": build, "files": sorted(files)})
    kept, pruned = releases[:keep], releases[keep:]
    still_named = {str(f) for release in kept for f in _files(release)}
    removed = []
    for release in pruned:
        for name in _files(release):
            if name not in still_named and safe_hashed_name(name):
                (directory / name).unlink(missing_ok=True)
                removed.append(name)
    manifest_path.write_text(json.dumps({"releases": kept}, indent=2) + "\n")
    return ExportResult(
        written=written, removed=sorted(set(removed)), releases=[str(r["build"]) for r in kept]
    )


def _files(release: Mapping[str, object]) -> list[str]:
    files = release.get("files", [])
    return [str(f) for f in files] if isinstance(files, list) else []
