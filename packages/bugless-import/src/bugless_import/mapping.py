"""The mapping file: the source's vocabulary in bugless's terms.

A TOML file, every section optional::

    [statuses]            # source status (``closed/wontfix`` with a resolution)
    "closed/wontfix" = "WONT_FIX_INFEASIBLE"
    [priorities]
    blocker = "P0"
    [types]
    defect = "BUG"
    [severities]
    critical = "S1"
    [components]          # source component -> bugless component path
    "ui" = "Frontend>Web UI"
    [labels]              # source label -> a hotlist, or a custom field value
    regression = "hotlist:Regressions"
    "area/net" = "field:Area=Networking"

Each importer brings defaults for its stock vocabulary
(:attr:`bugless_core.importer.Importer.default_mapping`); the file overrides
them key by key. Keys match case-insensitively. A value the mapping does not
know is *unmapped*: ``--dry-run`` lists them; an import falls back (status:
NEW when open, FIXED when the source closed it; others: the bugless default)
and counts them in its report.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path

from bugless_core.errors import InvalidArgument
from bugless_proto import v1

_SECTIONS = ("statuses", "priorities", "types", "severities", "components", "labels")
_ENUMS: dict[str, type[v1.Status] | type[v1.Priority] | type[v1.IssueType] | type[v1.Severity]] = {
    "statuses": v1.Status,
    "priorities": v1.Priority,
    "types": v1.IssueType,
    "severities": v1.Severity,
}


@dataclass(frozen=True)
class LabelTarget:
    """Where a label goes: a hotlist by name, or a custom field's value."""

    hotlist: str = ""
    field: str = ""
    value: str = ""


@dataclass
class Mapping:
    """The resolved mapping of one run, and what it could not map.

    Attributes:
        sections: section -> case-folded source value -> bugless name.
        labels: case-folded label -> target.

    Source values and labels are matched in any case by ``str.casefold``,
    the rule the Model compares names by ("STRASSE" maps "straße").
        unmapped: (section, source value) -> how often it was met.
    """

    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    labels: dict[str, LabelTarget] = field(default_factory=dict)
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def enum(self, section: str, value: str) -> int:
        """The wire value of a source value in an enum section; 0 when unmapped or empty."""
        if not value:
            return 0
        name = self.sections.get(section, {}).get(value.casefold())
        if name is None:
            self.unmapped[(section, value)] += 1
            return 0
        return int(_member(section, name))

    def component(self, value: str) -> str:
        """The bugless path a source component maps to ("" when not named)."""
        return self.sections.get("components", {}).get(value.casefold(), "")

    def path_of(self, value: str, root: str) -> str:
        """Where the source component ``value`` goes: its mapped path, else ``root>value``.

        The source's "no component" ("") goes to ``root`` itself.
        """
        return (self.component(value) if value else "") or root + (f">{value}" if value else "")

    def label(self, value: str, *, count: bool = True) -> LabelTarget | None:
        """Where a label goes, if anywhere (unmapped labels are counted unless ``count`` is off).

        Resolving an issue's labels looks a label up again for each change of
        its labels; those look-ups pass ``count=False``, and a run counts each
        issue's labels once (:func:`bugless_import.dry_run.count_labels`).
        """
        target = self.labels.get(value.casefold())
        if target is None and count:
            self.unmapped[("labels", value)] += 1
        return target


def _member(section: str, name: str) -> v1.Status | v1.Priority | v1.IssueType | v1.Severity:
    enum = _ENUMS[section]
    try:
        return enum[name.upper()]
    except KeyError:
        names = ", ".join(m.name for m in enum if m.value)
        msg = f"[{section}]: {name!r} is not a bugless value; use one of {names}"
        raise ValueError(msg) from None


def _label_target(key: str, raw: str) -> LabelTarget:
    kind, _, rest = raw.partition(":")
    if kind == "hotlist" and rest.strip():
        return LabelTarget(hotlist=rest.strip())
    if kind == "field" and "=" in rest:
        name, _, value = rest.partition("=")
        if name.strip() and value.strip():
            return LabelTarget(field=name.strip(), value=value.strip())
    raise ValueError(
        f"[labels] {key!r}: {raw!r} is neither 'hotlist:<name>' nor 'field:<name>=<value>'"
    )


def mapping_content(data: bytes) -> Mapping:
    """What ``--mapping`` must hold (checked when ``bugless import`` starts).

    The file alone, without an importer's defaults: those only add keys,
    and every value the file gives is checked as :func:`load_mapping` would.

    Raises:
        ValueError: not UTF-8, not TOML, or not a mapping :func:`load_mapping` reads.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return _resolve(_parsed(text), None)


def load_mapping(
    path: Path | None, defaults: MappingABC[str, MappingABC[str, str]] | None = None
) -> Mapping:
    """The importer's defaults overridden by the file at ``path`` (if any).

    Raises:
        InvalidArgument: the file is not UTF-8 TOML, names an unknown
            section, or maps to something bugless does not have.
    """
    try:
        data = {} if path is None else _parsed(path.read_text(encoding="utf-8"))
        return _resolve(data, defaults)
    except UnicodeDecodeError as exc:
        msg = f"mapping {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise InvalidArgument(msg) from exc
    except ValueError as exc:
        where = f"mapping {path}" if path is not None else "the importer's default mapping"
        raise InvalidArgument(f"{where}: {exc}") from exc


def _parsed(text: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from exc


def _resolve(
    data: dict[str, object], defaults: MappingABC[str, MappingABC[str, str]] | None
) -> Mapping:
    """``defaults`` overridden by ``data``, every value checked.

    Raises:
        ValueError: naming the section (and key) at fault.
    """
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown section [{unknown[0]}]; use {', '.join(_SECTIONS)}")
    mapping = Mapping()
    for section in _SECTIONS:
        merged = {k.casefold(): v for k, v in (defaults or {}).get(section, {}).items()}
        given = data.get(section, {})
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise ValueError(f'[{section}]: expected key = "value" pairs')
        merged.update({str(k).casefold(): str(v) for k, v in given.items()})
        if section == "labels":
            mapping.labels = {k: _label_target(k, v) for k, v in merged.items()}
            continue
        if section in _ENUMS:
            for value in merged.values():
                _member(section, value)
        mapping.sections[section] = merged
    return mapping
