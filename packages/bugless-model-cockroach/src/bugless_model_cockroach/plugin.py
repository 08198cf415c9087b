"""Hook implementations of bugless-model-cockroach (the `bugless` entry point names this module).

This package is a foundation placeholder: it installs, imports and loads as a
plugin, and registers nothing yet. Its issue fills it.
"""

from __future__ import annotations
