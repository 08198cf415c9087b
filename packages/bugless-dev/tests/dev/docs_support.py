"""Where the repository's documents are, for the tests that read them.

The README examples, the documents' references to files and tests, and the
search syntax the README shows all read the same pages; they find them here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def readmes() -> list[Path]:
    """Every README of the repository (the root, packages, deploy, docs...)."""
    found = [ROOT / "README.md", *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md")]
    return sorted({p for p in found if ".venv" not in p.parts and ".bugless" not in p.parts})


def pages() -> list[Path]:
    """Every README and every page of docs/."""
    return [*readmes(), *sorted((ROOT / "docs").glob("*.md"))]
