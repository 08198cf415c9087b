"""Static assets under content-hashed URLs, so browsers may cache them forever.

At start-up every file under ``static/`` is hashed; templates ask for
``static_url("app.css")`` and get ``/static/app.3f2a9c1e.css``. A deploy that
changes a file changes its URL, so ``Cache-Control: immutable`` is safe, and
replicas of two versions running side by side (during a rollout or while
steering) each serve the files their pages name. With an asset archive
(:mod:`bugless_web.builds`), a replica also serves the files of earlier
releases, so a page of version N-1 keeps its styles and script when an N
replica answers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bugless_web.builds import build_id, safe_hashed_name

STATIC_DIR = Path(__file__).parent / "static"
#: One year: the longest lifetime caches honour.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"

#: Without a charset: Litestar appends "; charset=utf-8" to every text/ type
#: (one given here too was sent twice).
_MEDIA_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, media type and hashed URL name."""

    name: str
    hashed_name: str
    content: bytes
    media_type: str


class AssetCatalog:
    """The static files of this version, by plain and by hashed name."""

    def __init__(self, directory: Path = STATIC_DIR, *, archive: Path | None = None) -> None:
        self._archive = archive
        self._by_name: dict[str, Asset] = {}
        self._by_hashed: dict[str, Asset] = {}
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            name = path.relative_to(directory).as_posix()
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()[:12]
            stem, dot, suffix = name.rpartition(".")
            hashed = f"{stem}.{digest}.{suffix}" if dot else f"{name}.{digest}"
            asset = Asset(
                name=name,
                hashed_name=hashed,
                content=content,
                media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
            )
            self._by_name[name] = asset
            self._by_hashed[hashed] = asset
        # Asked on every request (the build check, the issue page's timeline
        # key): a digest of every asset name, worked out once.
        self._build_id = build_id(self._by_hashed)

    def url(self, name: str) -> str:
        """The hashed URL of ``name``; a missing file is a bug, so it raises KeyError."""
        return f"/static/{self._by_name[name].hashed_name}"

    def by_hashed_name(self, hashed: str) -> Asset | None:
        """The asset a hashed URL names: this version's, else an archived release's, else None."""
        asset = self._by_hashed.get(hashed)
        if asset is not None or self._archive is None or not safe_hashed_name(hashed):
            return asset
        path = self._archive / hashed
        try:
            content = path.read_bytes()
        except OSError:
            return None
        return Asset(
            name=hashed,
            hashed_name=hashed,
            content=content,
            media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        )

    @property
    def files(self) -> dict[str, bytes]:
        """This version's files by hashed name (what a release exports to the archive)."""
        return {hashed: asset.content for hashed, asset in self._by_hashed.items()}

    @property
    def build_id(self) -> str:
        """This version's build id (form contract and asset digest)."""
        return self._build_id
