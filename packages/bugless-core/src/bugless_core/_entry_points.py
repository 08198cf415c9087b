"""The installed entry points of one group, found without importing importlib.metadata.

Every ``bugless`` command loads the installed plugins first, so finding them
is part of every command's start-up, ``bugless --help`` and a script's
``bugless issue show`` included. ``importlib.metadata.entry_points`` costs
more than the rest of ``bugless --help`` together: importing it imports
``email``, ``zipfile``, ``csv`` and ``pathlib``, and it then parses every
installed distribution's entry points (~180 in a development environment)
into objects, to keep a handful.

What it searches is simple, and :func:`group_entry_points` searches the same:
every ``*.dist-info`` and ``*.egg-info`` directly in a directory of
``sys.path``, in path order, each distribution once (the first found, as
``importlib.metadata`` keeps it), reading ``entry_points.txt`` as text and
parsing only the group's section. Every distribution is still read on every
run: a plugin installed or removed a moment ago is found or gone on the next
one, there is no cache to go stale.

Where the search would differ, :func:`group_entry_points` asks
``importlib.metadata`` itself: a ``sys.meta_path`` finder other than the
standard path finder that finds distributions (a frozen or zipped
application's), or a ``sys.path`` entry that is a file (a zip) or an
``.egg``. ``test_entry_points.py`` compares both searches over the real
environment and real installed wheels.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = value`` of the group.

    Attributes:
        name: The entry point's name (a bugless plugin's name).
        value: ``module`` or ``module:attribute``, as written.
        distribution: The name of the distribution that declares it (as
            its metadata directory spells it; ``importlib.metadata.distribution``
            accepts it).
    """

    name: str
    value: str
    distribution: str

    def load(self) -> ModuleType | Any:
        """Import the module (and get the attribute) the value names."""
        reference = self.value.partition("[")[0]  # extras: nothing to import
        module, _, attribute = (part.strip() for part in reference.partition(":"))
        loaded: Any = importlib.import_module(module)
        for name in filter(None, attribute.split(".")):
            loaded = getattr(loaded, name)
        return loaded


def group_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` of every installed distribution, in ``sys.path`` order."""
    found = _search_path_directories(group)
    return found if found is not None else _from_importlib_metadata(group)


def _normalized(name: str) -> str:
    """A distribution name as ``importlib.metadata`` compares them (PEP 503, ``_`` for ``-``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _only_path_directories() -> bool:
    """Whether the standard path finder alone finds distributions, in directories only."""
    finders = [f for f in sys.meta_path if hasattr(f, "find_distributions")]
    if finders != [importlib.machinery.PathFinder]:
        return False
    return all(isinstance(entry, str) for entry in sys.path)


def _search_path_directories(group: str) -> list[EntryPoint] | None:
    """The group's entry points from ``sys.path``'s directories; None where it takes more."""
    if not _only_path_directories():
        return None
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        root = entry or "."
        if root.lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.isfile(root):  # a zip: importlib.metadata reads inside it
                return None
            continue  # absent: no distributions
        for child in children:
            stem, dot, suffix = child.rpartition(".")
            if not dot or suffix.lower() not in ("dist-info", "egg-info"):
                continue
            distribution = stem.partition("-")[0]
            key = _normalized(distribution)
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(root, child, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except OSError:  # none declared, or an egg-info file
                continue
            if f"[{group}]" in text:
                found.extend(_parse(text, group, distribution))
    return found


def _parse(text: str, group: str, distribution: str) -> list[EntryPoint]:
    """The group's ``name = value`` lines, read as ``importlib.metadata`` reads them."""
    section: str | None = None
    found: list[EntryPoint] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section == group:
            name, _, value = line.partition("=")
            found.append(EntryPoint(name.strip(), value.strip(), distribution))
    return found


def _from_importlib_metadata(group: str) -> list[EntryPoint]:
    """The group's entry points as ``importlib.metadata`` finds them (the general case)."""
    import importlib.metadata  # noqa: PLC0415 - the module docstring says why

    return [
        EntryPoint(ep.name, ep.value, ep.dist.name if ep.dist is not None else "")
        for ep in importlib.metadata.entry_points(group=group)
    ]


__all__ = ["EntryPoint", "group_entry_points"]
