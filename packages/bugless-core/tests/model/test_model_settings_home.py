"""``ModelSettings`` has one home and keeps the import paths backends use.

Its home is :mod:`bugless_core.model.settings` (so ``model serve --help``
loads no generated messages); backends outside this repository import it
from :mod:`bugless_core.model.backend` or the package, as the in-repository
ones still do.
"""

from __future__ import annotations

import bugless_core.model
import bugless_core.model.backend
import bugless_core.model.settings


def test_every_import_path_names_the_one_class() -> None:
    home = bugless_core.model.settings.ModelSettings
    assert home.__module__ == "bugless_core.model.settings"
    assert bugless_core.model.backend.ModelSettings is home
    assert bugless_core.model.ModelSettings is home
    assert "ModelSettings" in bugless_core.model.backend.__all__
