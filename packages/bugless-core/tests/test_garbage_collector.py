"""A serving process freezes what startup built and collects its young generation less often."""

from __future__ import annotations

import subprocess
import sys

from bugless_core.garbage_collector import GC_YOUNG_THRESHOLD

_PROBE = (
    "import gc\n"
    "from bugless_core.garbage_collector import settle_garbage_collector\n"
    "before = gc.get_freeze_count()\n"
    "middle, old = gc.get_threshold()[1:]\n"
    "settle_garbage_collector()\n"
    "print(before, gc.get_freeze_count(), *gc.get_threshold(), middle, old)\n"
)


def test_settling_freezes_startup_objects_and_raises_only_the_young_threshold() -> None:
    # In a process of its own: freezing this test process would keep its garbage.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    before, frozen, young, middle, old, middle_before, old_before = map(int, out)
    assert before == 0
    assert frozen > 1000  # the imported modules' objects at least
    assert young == GC_YOUNG_THRESHOLD
    assert (middle, old) == (middle_before, old_before)
