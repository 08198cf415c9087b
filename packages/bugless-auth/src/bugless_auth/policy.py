"""Global permissions from groups: the authorisation policy.

A policy maps a group name (or ``*``, everyone signed in) to the permissions
its members get::

    {"admins": ["admin"], "triagers": ["create_component"], "*": ["create_hotlist"]}

``admin`` implies every other permission. Each answer names the rule that
granted it (``granted_by``) so that audit logs can say *why*, not just *that*.
Per-issue and per-component access is the Model's business (ACLs); this is
only for global permissions.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ADMIN = "admin"
#: Lets an administrator create, disable and merge users, end anyone's
#: sessions, and list and revoke anyone's certificates.
MANAGE_USERS = "manage_users"
#: Lets an importer match the people of another tracker to bugless users.
IMPORT_ISSUES = "import_issues"
#: The permissions bugless itself checks; a policy may name others for extensions.
KNOWN_PERMISSIONS = (
    ADMIN,
    "create_component",
    "create_hotlist",
    MANAGE_USERS,
    IMPORT_ISSUES,
)
#: Permissions ``admin`` does not imply: granted only by name. Importing
#: writes other people's names and past times into the history, so it is
#: given to an import identity on purpose, never as a side effect of admin.
EXPLICIT_ONLY = frozenset({"import_issues"})
EVERYONE = "*"
#: What an Authenticator without ``--policy`` grants: admins administer (and
#: import), and everyone signed in keeps personal hotlists, as in Google's
#: tracker; top-level components stay with admins, since they shape the tree
#: everyone files into.
DEFAULT_POLICY: Mapping[str, tuple[str, ...]] = {
    "admins": (ADMIN, "import_issues"),
    EVERYONE: ("create_hotlist",),
}
_PERMISSION = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


class PolicyError(ValueError):
    """The policy cannot be used; the message says where and what is accepted."""


@dataclass(frozen=True)
class Decision:
    """An authorisation answer: allowed, and by which rule."""

    allowed: bool
    granted_by: str = ""


def parse_policy(text: str, *, origin: str = "policy") -> dict[str, tuple[str, ...]]:
    """Read a policy from JSON or TOML text (``{group: [permission, ...]}``).

    Raises:
        PolicyError: not JSON/TOML, or not a mapping of names to lists of
            permission names.
    """
    data: object
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"{origin}: neither JSON nor TOML ({exc})"
            raise PolicyError(msg) from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: expected a mapping of group name to permissions")
    policy: dict[str, tuple[str, ...]] = {}
    for group, permissions in data.items():
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise PolicyError(f"{origin}: {group!r} must map to a list of permission names")
        for permission in permissions:
            if not _PERMISSION.match(permission):
                raise PolicyError(
                    f"{origin}: {group!r} grants {permission!r}, which is not a permission "
                    f"name (lower-case, e.g. {', '.join(KNOWN_PERMISSIONS)})"
                )
        policy[str(group)] = tuple(permissions)
    return policy


def load_policy(value: str) -> dict[str, tuple[str, ...]]:
    """A policy from inline JSON/TOML or, when ``value`` names a file, from that file.

    Raises:
        PolicyError: the file cannot be read or is not UTF-8 text (naming
            the file and, for the latter, the byte: a policy saved in a
            legacy encoding is otherwise only the decoder's message), or
            the policy does not parse (:func:`parse_policy`).
    """
    stripped = value.strip()
    if stripped.startswith("{") or "=" in stripped or "\n" in stripped:
        return parse_policy(stripped)
    path = Path(stripped)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"policy file {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "a policy file must be UTF-8 JSON or TOML"
        ) from exc
    return parse_policy(text, origin=str(path))


class Policy:
    """Answers "may members of these groups do this?" from a group → permissions map."""

    def __init__(self, rules: Mapping[str, Iterable[str]] | None = None) -> None:
        """Use ``rules``, or :data:`DEFAULT_POLICY` when ``None``."""
        source = DEFAULT_POLICY if rules is None else rules
        self.rules: dict[str, tuple[str, ...]] = {g: tuple(p) for g, p in source.items()}

    def _rules_for(self, groups: Iterable[str]) -> Iterable[tuple[str, str]]:
        for group in [EVERYONE, *sorted(set(groups))]:
            for permission in self.rules.get(group, ()):
                yield group, permission

    def permissions(self, groups: Iterable[str]) -> list[str]:
        """Every permission the groups grant, sorted (``admin`` expands to all known)."""
        granted = {permission for _, permission in self._rules_for(groups)}
        if ADMIN in granted:
            granted.update(p for p in KNOWN_PERMISSIONS if p not in EXPLICIT_ONLY)
        return sorted(granted)

    def decide(self, groups: Iterable[str], permission: str) -> Decision:
        """Whether the groups grant ``permission``, and the first rule that does.

        A direct grant is preferred over ``admin`` in ``granted_by``, since it
        is the narrower reason.
        """
        rules = list(self._rules_for(groups))
        for group, granted in rules:
            if granted == permission:
                return Decision(True, f"group {group} grants {permission}")
        for group, granted in rules:
            if granted == ADMIN and permission not in EXPLICIT_ONLY:
                return Decision(True, f"group {group} grants admin")
        return Decision(False)
