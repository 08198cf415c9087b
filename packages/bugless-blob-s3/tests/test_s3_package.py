from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import bugless_blob_s3
from bugless_core.plugins import load_plugins


def test_package_installs_with_its_version() -> None:
    assert bugless_blob_s3.__version__ == importlib.metadata.version("bugless-blob-s3")


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    assert "bugless_blob_s3.plugin" in {p.module for p in load_plugins().loaded}


def test_registering_the_store_does_not_import_the_s3_client() -> None:
    """Every bugless process loads every plugin; aiobotocore and aiohttp cost ~45 MB of RSS."""
    code = (
        "import sys; from bugless_core.plugins import load_plugins; "
        "assert 's3' in load_plugins().blob_stores; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiobotocore', 'botocore')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
