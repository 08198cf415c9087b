"""The ``bugless`` commands of bugless-api: ``api serve`` and the client commands."""

from __future__ import annotations
