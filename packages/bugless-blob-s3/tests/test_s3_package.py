from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import bugless_blob_s3
from bugless_blob_s3.settings import S3BlobSettings
from bugless_core.plugins import load_plugins
from bugless_core.settings import environment_settings


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


def test_the_command_reference_lists_every_variable_of_the_store() -> None:
    """Before, docs/cli.md (the README's "full reference of every ... environment
    variable") named neither ``BUGLESS_BLOB_STORE`` nor any ``BUGLESS_BLOB_S3_*``."""
    reference = (Path(__file__).parents[3] / "docs" / "cli.md").read_text(encoding="utf-8")
    section = reference.split("### `BUGLESS_BLOB_STORE=s3`", 1)[1].split("\n## ", 1)[0]
    variables = environment_settings(S3BlobSettings)
    assert len(variables) == 9
    for variable in variables:
        assert f"| `{variable.names[0]}` |" in section, variable
    assert "| `BUGLESS_BLOB_S3_BUCKET` | **required** |" in section
