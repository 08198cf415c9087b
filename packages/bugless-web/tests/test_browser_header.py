"""The top bar in a real browser: every link and button in it is whole, and is what a click hits.

The search form grew from nothing (``flex: 1``) with a 280 px minimum, while
its input, button and "Search help" link needed more: where the bar's first
line had between 280 px and that much left for it (reported at 1280 px; with
DejaVu fonts, at 900 px, where this test caught it), the link was pushed out of the form and
drawn under the Create button, cut off and not clickable. Checked at a laptop
width, at that narrower desk width, and at a phone's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser_support import iter_console_problems, new_tab, save_screenshot, sign_in
from playwright.sync_api import Browser, expect

from bugless_dev.stack import RunningService

#: For each control of the top bar: its text, its box, and whether a click at
#: its middle reaches it (nothing laid over it) and its box is all on screen
#: and not cut by an ancestor that hides what overflows.
_CONTROLS = """() => {
  const out = [];
  const width = document.documentElement.clientWidth;
  for (const el of document.querySelectorAll(
      "header.topbar a, header.topbar button, header.topbar input:not([type=hidden])")) {
    const box = el.getBoundingClientRect();
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    let clipped = false;
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      const outer = up.getBoundingClientRect();
      if (box.right > outer.right + 0.5 || box.left < outer.left - 0.5) { clipped = true; }
    }
    out.push({
      name: (el.textContent || el.getAttribute("aria-label") || el.tagName).trim(),
      left: box.left, right: box.right, top: box.top, bottom: box.bottom,
      width: box.width, height: box.height,
      reached: hit !== null && (hit === el || el.contains(hit)),
      onScreen: box.left >= 0 && box.right <= width + 0.5,
      outsideItsBox: clipped,
    });
  }
  return out;
}"""


def _overlapping(controls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of controls whose boxes overlap (a link drawn over its neighbour)."""
    pairs = []
    for n, one in enumerate(controls):
        for other in controls[n + 1 :]:
            if (
                one["left"] < other["right"] - 0.5
                and other["left"] < one["right"] - 0.5
                and one["top"] < other["bottom"] - 0.5
                and other["top"] < one["bottom"] - 0.5
            ):
                pairs.append((one["name"], other["name"]))
    return pairs


def test_every_header_link_is_whole_and_clickable_at_laptop_and_phone_widths(
    web_server: RunningService, browser: Browser, tmp_path: Path
) -> None:
    """Alice is an administrator: her top bar has the most links (Operations too)."""
    for width, height in ((1280, 800), (900, 800), (360, 740)):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        try:
            tab = new_tab(ctx)
            page = tab.page
            sign_in(tab, web_server, "alice")
            controls: list[dict[str, Any]] = page.evaluate(_CONTROLS)
            save_screenshot(page, tmp_path, f"header-{width}")
            names = [c["name"] for c in controls]
            assert "Search help" in names, names
            assert "Operations" in names, names
            for control in controls:
                assert control["width"] > 0, (width, control)
                assert control["height"] > 0, (width, control)
                assert control["onScreen"], (width, control)
                assert not control["outsideItsBox"], (width, control)
                assert control["reached"], (width, control)
            assert _overlapping(controls) == [], width
            wider = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wider <= 0, f"{width}: the page is {wider}px wider than the window"
            page.get_by_role("link", name="Search help").click()
            expect(page).to_have_url(f"{web_server.url}/search/help")
            assert list(iter_console_problems(tab.console)) == []
        finally:
            ctx.close()
