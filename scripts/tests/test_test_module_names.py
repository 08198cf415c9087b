"""Every package's test modules can be collected in one pytest run.

pytest imports a test module (and a helper beside it, ``api_support``) by its
file name, with its folder put on ``sys.path`` (the test folders have no
``__init__.py``). Two packages' ``test_ids.py`` are then one module name, and
``pytest packages/*/tests`` fails at collection on the second ("import file
mismatch"), although each package's session (``nox -s tests``) passes alone.
So a module's name is unique across the packages' tests; ``conftest.py`` is
the exception pytest handles itself. Outside bugless-core, a module whose
subject another package tests too takes its package's name as a prefix
(``test_api_ids.py``, ``test_web_ids.py``, ``test_cockroach_leases.py``).

For the same reason no module imports ``conftest``: with several trees in one
run, the module of that name is whichever tree's conftest pytest loaded last
(bugless-core's gRPC tests read ``SOURCES`` from bugless-dev's, and failed to
collect, when both trees ran together). What tests share goes in a helper
module beside them (``grpc_test_server``).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _top_level_modules() -> dict[str, list[str]]:
    """Each module name pytest imports from a test folder: the files that have it."""
    found: dict[str, list[str]] = defaultdict(list)
    for module in sorted((ROOT / "packages").glob("*/tests/**/*.py")):
        if module.name == "conftest.py" or (module.parent / "__init__.py").exists():
            continue  # pytest loads conftests apart; a package's modules have dotted names
        found[module.stem].append(str(module.relative_to(ROOT)))
    return found


def test_no_two_test_modules_share_a_name() -> None:
    shared = {name: files for name, files in _top_level_modules().items() if len(files) > 1}
    assert shared == {}


def _imports_conftest(module: Path) -> bool:
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.ImportFrom) and node.module == "conftest" and not node.level:
            return True
        if isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names):
            return True
    return False


def test_no_test_module_imports_conftest() -> None:
    importing = [
        str(module.relative_to(ROOT))
        for module in sorted((ROOT / "packages").glob("*/tests/**/*.py"))
        if _imports_conftest(module)
    ]
    assert importing == []


def test_the_check_sees_the_test_folders() -> None:
    modules = _top_level_modules()
    assert "test_cockroach_conformance" in modules
    assert "api_support" in modules
    assert "message_pool" not in modules  # a module of the package wire_sample


def test_each_package_s_tests_have_one_conftest_at_their_top() -> None:
    """So ``mypy --strict packages/PKG/tests`` checks a package's tests alone.

    The folders are no packages, so every ``conftest.py`` in one of them is
    the module ``conftest``, and mypy stops on the second ("Duplicate module
    named 'conftest'"); ``nox -s typecheck`` runs each package's tests as one
    run for the same reason. A sub-folder's fixtures go in the package's
    conftest (bugless-core's ``grpc/`` ones are there).
    """
    nested = [
        str(conftest.relative_to(ROOT))
        for conftest in sorted((ROOT / "packages").glob("*/tests/*/**/conftest.py"))
    ]
    assert nested == []
