"""Version of the package (read by hatchling and `bugless --version`)."""

from __future__ import annotations

__version__ = "0.1.0"
