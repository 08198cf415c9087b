"""After ``bugless logout`` the next command says to log in, not that a flag is wrong.

``logout`` deletes ``login.pem``/``login.key`` and leaves ``client.toml``
naming them. Before, the next command said ``--cert: …/login.pem is not a
readable file``, though the person never gave ``--cert``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bugless_api.client import BuglessClient
from bugless_core.errors import InvalidArgument
from bugless_testing.program import BUGLESS_SCRIPT


def _whoami(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")},
        **(env or {}),
        "BUGLESS_CLIENT_CONFIG": str(config),
    }
    return subprocess.run(
        [BUGLESS_SCRIPT, "whoami", *args], env=env, capture_output=True, text=True, check=False
    )


def _logged_out(tmp_path: Path) -> Path:
    """A config directory as ``bugless login`` then ``bugless logout`` leave it."""
    (tmp_path / "ca.pem").write_text("not used\n", encoding="utf-8")
    config = tmp_path / "client.toml"
    config.write_text(
        f'cert = "{tmp_path / "login.pem"}"\nkey = "{tmp_path / "login.key"}"\n'
        f'api = "127.0.0.1:1"\nca = "{tmp_path / "ca.pem"}"\n',
        encoding="utf-8",
    )
    return config


def test_a_command_after_logout_says_to_log_in(tmp_path: Path) -> None:
    done = _whoami(_logged_out(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: not logged in: {tmp_path / 'login.pem'}, the cert {tmp_path / 'client.toml'} "
        "names, does not exist; run `bugless login` (or give --cert)\n"
    )


def test_a_missing_file_given_as_a_flag_is_still_named_as_the_flag(tmp_path: Path) -> None:
    done = _whoami(_logged_out(tmp_path), "--cert", str(tmp_path / "elsewhere.pem"))
    assert done.returncode == 2
    assert f"--cert: {tmp_path / 'elsewhere.pem'} is not a readable file" in done.stderr


@pytest.mark.parametrize("case", ["logged out", "variable names a missing file"])
def test_a_script_and_a_command_are_refused_alike(tmp_path: Path, case: str) -> None:
    """``BuglessClient.from_config`` and the commands read one settings order, one message.

    Before, each had its own copy: after ``logout`` a script was told
    ``cert: …/login.pem is not a readable file`` while a command said "not
    logged in", and a command blamed ``--cert`` for a file ``BUGLESS_CERT`` named.
    """
    config = _logged_out(tmp_path)
    environ = {"BUGLESS_CLIENT_CONFIG": str(config)}
    expected = (
        f"not logged in: {tmp_path / 'login.pem'}, the cert {config} names, does not exist; "
        "run `bugless login`"
    )
    if case != "logged out":
        environ["BUGLESS_CERT"] = str(tmp_path / "elsewhere.pem")
        expected = f"BUGLESS_CERT: {tmp_path / 'elsewhere.pem'} is not a readable file"
    with pytest.raises(InvalidArgument) as refused:
        BuglessClient.from_config(environ)
    assert refused.value.message == expected
    done = _whoami(config, env=environ)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {expected}")
