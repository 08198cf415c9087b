"""docs/alerts.md names every background loop the alert on failing loops can name.

``BuglessBackgroundLoopFailing`` and ``BuglessBackgroundLoopOutage`` fire
with a ``loop`` label; an operator paged with ``loop="notify.digests"``
looks it up in the runbook's list. A loop added to the code and not to the
list (two were, once) leaves that operator guessing, and a loop renamed
leaves the list naming one that no longer exists. So the list is compared
with the loops the code supervises: every ``SupervisedLoop(name, ...)`` in
the packages' sources, read from their syntax tree, an f-string's fields as
``<field>`` (``f"auth.ldap_probe:{url}"`` is ``auth.ldap_probe:<url>``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from alert_rules import RUNBOOK

SOURCES = Path(__file__).resolve().parents[2] / "packages"
SECTION = "### BuglessBackgroundLoopFailing"
#: A loop's name as the runbook writes it in backticks (``model.feed_pruning``,
#: ``lease_renewal:<name>``): no spaces, a ``.`` or ``:`` after the first word.
_LOOP_NAME = re.compile(r"`([a-z_]+[.:][\w.:<>-]+)`")


def _placeholder(node: ast.expr) -> str:
    """``<backend>`` for ``{backend.name}``: an f-string field named by its first name."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.value if not isinstance(node, ast.Call) else node.func
    assert isinstance(node, ast.Name), f"an f-string field that is not a name: {ast.dump(node)}"
    return f"<{node.id}>"


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's top-level string constants (``FOLLOWER_LOOP = "user_cache.changes"``)."""
    found: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            value = statement.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.update((t.id, value.value) for t in targets if isinstance(t, ast.Name))
    return found


def _loop_name(argument: ast.expr, constants: dict[str, str], where: str) -> str:
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.Name) and argument.id in constants:
        return constants[argument.id]
    if isinstance(argument, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else _placeholder(part.value)
            for part in argument.values
            if isinstance(part, ast.Constant | ast.FormattedValue)
        )
    raise AssertionError(f"{where}: a loop name this test cannot read: {ast.unparse(argument)}")


def supervised_loops(root: Path = SOURCES) -> dict[str, str]:
    """Every loop name a package's source gives ``SupervisedLoop``, with where it is."""
    loops: dict[str, str] = {}
    for path in sorted(root.glob("*/src/**/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = node.func
            name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")
            if name != "SupervisedLoop" or not node.args:
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            loops[_loop_name(node.args[0], constants, where)] = where
    return loops


def documented_loops(runbook: str) -> set[str]:
    """The loops the runbook lists: the names in its first paragraph on failing loops."""
    assert SECTION in runbook, f"{RUNBOOK} has no section {SECTION!r}"
    section = runbook.split(SECTION, 1)[1].strip()
    first_paragraph = section.split("\n\n", 1)[0]
    return set(_LOOP_NAME.findall(first_paragraph))


def test_the_runbook_lists_exactly_the_loops_the_code_supervises() -> None:
    in_code = supervised_loops()
    listed = documented_loops(RUNBOOK.read_text(encoding="utf-8"))
    missing = {name: where for name, where in in_code.items() if name not in listed}
    assert not missing, f"docs/alerts.md ({SECTION}) does not list: {missing}"
    assert not listed - set(in_code), (
        f"docs/alerts.md lists loops no code runs: {listed - set(in_code)}"
    )


def test_every_form_of_a_loop_name_is_read(tmp_path: Path) -> None:
    """A constant, a module constant, an f-string; anything else fails rather than hides."""
    source = tmp_path / "pkg" / "src" / "pkg" / "loops.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        'LOOP = "pkg.follower"\n'
        'a = SupervisedLoop("pkg.sweep")\n'
        "b = supervision.SupervisedLoop(LOOP, registry=r)\n"
        'c = SupervisedLoop(f"pkg.probe:{self.backend.name}")\n'
    )
    assert set(supervised_loops(tmp_path)) == {"pkg.follower", "pkg.sweep", "pkg.probe:<self>"}
    source.write_text("d = SupervisedLoop(make_name())\n")
    with pytest.raises(AssertionError, match=r"cannot read: make_name\(\)"):
        supervised_loops(tmp_path)


def test_the_runbook_list_is_read_from_its_first_paragraph() -> None:
    text = (
        f"{SECTION}\n\n`bugless_x > 0` for 5 minutes: a loop (`a.b`, `c:<d>`, e.g. `no`)\n"
        "failed.\n\nLogger `bugless.supervision` names the loop.\n"
    )
    assert documented_loops(text) == {"a.b", "c:<d>"}
