"""The ``bugless`` console script of this interpreter's install, as a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

#: The ``bugless`` script pip installed next to this interpreter (a venv's
#: ``bin``): what a user types, so its usage and help lines say ``bugless``
#: and its entry point is the one the package declares. A test that only
#: needs the command, installed as a script or not, runs
#: :data:`bugless_dev.processes.BUGLESS_COMMAND` instead.
BUGLESS_SCRIPT = str(Path(sys.executable).with_name("bugless"))
