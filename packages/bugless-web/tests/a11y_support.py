"""axe-core in the browser tests: one run of its rules, and the findings people read.

axe-core (the engine behind browser accessibility audits; its script comes
from the ``axe-playwright-python`` package of the ``testing`` extra) runs the
WCAG 2.1 A and AA rules and its best practices inside the page. A violation
of impact "serious" or "critical" fails a test, whatever page it is on; the
lesser ones are listed in the failure message too, so one run shows all.
Every audit writes what it found (and what axe could not decide) as JSON
beside its screenshots, under ``browser_support.SHARED_SCREENS``.

Shared by the audits of ``test_browser_a11y.py`` (the main screens, with and
without script) and ``test_browser_a11y_edges.py`` (the pages after a form,
dev-only pages and the error pages).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from browser_support import SHARED_SCREENS

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

    from bugless_dev.stack import RunningService

#: axe-core's bundle as the package ships it (read once; injected into each page).
AXE_SCRIPT = (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")

#: The rule sets run: WCAG 2.0 and 2.1, levels A and AA, and axe's best
#: practices (landmarks, heading order, one main, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

#: Impacts that fail the test.
FAILING_IMPACTS = frozenset({"serious", "critical"})

#: Rules a page may break, with the reason. Empty: every rule holds everywhere.
ALLOWED_RULES: dict[str, str] = {}

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

#: Where each run's findings are written for people to read, beside its screenshots.
FINDINGS = SHARED_SCREENS / "a11y"


#: Timers for axe in a page whose own script is off. Playwright still
#: evaluates there, and promises settle, but Chromium runs no timer task, and
#: ``axe.run`` waits on ``setTimeout(..., 0)`` between its steps: it would
#: never finish. Zero-delay timers run as microtasks instead; longer ones are
#: axe's guards (a frame's or an asset preload's time-out), which a run that
#: finishes never reaches, so they are dropped rather than fired at once.
_TIMERS_WITHOUT_SCRIPT = """() => {
  let handles = 0;
  window.setTimeout = (callback, delay, ...args) => {
    handles += 1;
    if (!(delay > 1)) Promise.resolve().then(() => callback(...args));
    return handles;
  };
  window.clearTimeout = () => {};
}"""


def run_axe(
    page: Page, unsure: list[dict[str, Any]] | None = None, *, script_off: bool = False
) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (WCAG 2.1 A/AA and best practices).

    ``unsure`` receives what axe could not decide by itself (its "incomplete":
    a colour contrast over an image or a gradient, say), for a person to check.
    ``script_off``: the page's context has JavaScript disabled (see
    :data:`_TIMERS_WITHOUT_SCRIPT`).
    """
    page.wait_for_load_state()
    if script_off:
        page.evaluate(_TIMERS_WITHOUT_SCRIPT)
    page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}}
    found: dict[str, Any] = page.evaluate("(options) => axe.run(document, options)", options)
    if unsure is not None:
        unsure += found["incomplete"]
    violations: list[dict[str, Any]] = found["violations"]
    return violations


def describe(page_name: str, violations: list[dict[str, Any]]) -> list[str]:
    """One line per violated rule: page, rule id, impact, how many nodes, an example."""
    lines = []
    for v in violations:
        example = v["nodes"][0]["target"] if v["nodes"] else ""
        lines.append(
            f"{page_name}: {v['id']} ({v['impact']}) x{len(v['nodes'])} e.g. {example}"
            f" -- {v['help']}"
        )
    return lines


class Audit:
    """The findings of one test's pages: checked one at a time, written once at the end.

    Each page checked is also shot (1280 px, and 390 px when asked) into
    :data:`FINDINGS`, to see that a fix kept the layout.
    """

    def __init__(self, tag: str, *, script_off: bool = False) -> None:
        """Findings go to ``FINDINGS/<tag>.json`` and ``<tag>-undecided.json``.

        ``script_off``: the pages are audited in a context with JavaScript disabled.
        """
        self.tag = tag
        self.script_off = script_off
        self.failing: list[str] = []
        self.everything: dict[str, list[dict[str, Any]]] = {}
        self.undecided: dict[str, list[str]] = {}
        FINDINGS.mkdir(parents=True, exist_ok=True)

    def check(self, page: Page, name: str, *, phone: bool = False) -> None:
        """Audit the page as it is now (and at a phone's width too when ``phone``)."""
        for size in [DESKTOP, PHONE] if phone else [DESKTOP]:
            shown = name if size is DESKTOP else f"{name}@390"
            page.set_viewport_size(size)
            page.wait_for_load_state()
            page.screenshot(path=str(FINDINGS / f"{name}-{size['width']}.png"), full_page=True)
            unsure: list[dict[str, Any]] = []
            violations = [
                v
                for v in run_axe(page, unsure, script_off=self.script_off)
                if v["id"] not in ALLOWED_RULES
            ]
            self.undecided[shown] = [
                f"{v['id']} x{len(v['nodes'])} e.g. {v['nodes'][0]['target'] if v['nodes'] else ''}"
                for v in unsure
            ]
            self.everything[shown] = [
                {
                    "id": v["id"],
                    "impact": v["impact"],
                    "count": len(v["nodes"]),
                    "example": v["nodes"][0]["target"] if v["nodes"] else "",
                    "html": v["nodes"][0]["html"][:200] if v["nodes"] else "",
                    "help": v["help"],
                }
                for v in violations
            ]
            self.failing += describe(
                shown, [v for v in violations if v["impact"] in FAILING_IMPACTS]
            )
        page.set_viewport_size(DESKTOP)

    def visit(
        self,
        page: Page,
        server: RunningService,
        pages: list[tuple[str, str]],
        *,
        on_a_phone: frozenset[str] = frozenset(),
    ) -> None:
        """Go to each (name, path) of ``pages`` and check it."""
        page.set_viewport_size(DESKTOP)
        for name, path in pages:
            page.goto(f"{server.url}{path}")
            self.check(page, name, phone=name in on_a_phone)

    def finish(self) -> list[str]:
        """Write the findings; return the failing lines (the lesser ones after them)."""
        (FINDINGS / f"{self.tag}.json").write_text(json.dumps(self.everything, indent=1))
        (FINDINGS / f"{self.tag}-undecided.json").write_text(json.dumps(self.undecided, indent=1))
        if not self.failing:
            return []
        lesser = [
            f"{name}: {v['id']} ({v['impact']}) x{v['count']} e.g. {v['example']}"
            for name, found in self.everything.items()
            for v in found
            if v["impact"] not in FAILING_IMPACTS
        ]
        return [*self.failing, "(lesser, not failing:)", *lesser]


#: What has the keyboard focus, and whether its focus ring shows (2 px or more).
FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {
    tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute("name") || "",
    type: el.getAttribute("type") || "", cls: String(el.className),
    text: (el.textContent || "").trim().slice(0, 40),
    href: el.getAttribute("href") || "",
    inMain: !!el.closest("main"),
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
  };
}"""
