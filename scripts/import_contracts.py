"""An import-linter contract import-linter lacks: no package imports another's private module.

A module whose name (or the name of a package above it) starts with ``_`` is
private to the top-level package that holds it (STYLE.md). A package that needs
something from another package's private module is asking for a public seam;
this contract fails until it has one. Dunder modules (``__about__``,
``__init__``) are public.

Configured in the root ``pyproject.toml`` (``[tool.importlinter]``, type
``private_modules``) and run by ``nox -s lint`` (``lint-imports``).
"""

from __future__ import annotations

from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _is_private(module: str) -> bool:
    """Whether any segment below the top-level package is private (``_x``, not ``__x__``)."""
    return any(
        part.startswith("_") and not (part.startswith("__") and part.endswith("__"))
        for part in module.split(".")[1:]
    )


class PrivateModulesContract(Contract):
    """Modules of ``packages`` import no private module of another top-level package.

    Configuration options:
        - packages: The top-level packages whose imports are checked (and
          whose private modules are protected).
    """

    type_name = "private_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        """Find every direct import of another package's private module."""
        del verbose
        tops = set(self.packages)  # type: ignore[call-overload]
        violations: list[dict[str, Any]] = []
        for importer in sorted(graph.modules):
            top = importer.split(".", 1)[0]
            if top not in tops:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                imported_top = imported.split(".", 1)[0]
                if imported_top == top or imported_top not in tops or not _is_private(imported):
                    continue
                lines = [
                    detail["line_number"]
                    for detail in graph.get_import_details(importer=importer, imported=imported)
                ]
                violations.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """Name each import, with its line numbers, and what to do instead."""
        for violation in check.metadata["violations"]:
            lines = ", ".join(f"l.{n}" for n in violation["lines"])
            output.print_error(
                f"{violation['importer']} imports the private {violation['imported']} ({lines})",
                bold=False,
            )
        output.new_line()
        output.print(
            "A private module belongs to its package: give the other package a public seam."
        )
