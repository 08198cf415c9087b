"""The Model's statement timeout is an operator's setting: a flag and a variable, checked.

``--statement-timeout-seconds`` / ``BUGLESS_STATEMENT_TIMEOUT_SECONDS`` of
``bugless model serve`` and ``migrate`` (the migration's batches run under
it). A value that is no bound (0, negative, not a number) or more than
PostgreSQL takes is refused before anything connects, with a message naming
the flag, the variable and the accepted range.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bugless_core.cli import build_cli
from bugless_core.errors import InvalidArgument
from bugless_core.model.settings import ModelSettings
from bugless_core.plugins import load_plugins
from bugless_core.settings import settings_from_environ

UNREACHABLE = "postgresql://bugless@127.0.0.1:1/nothing"


@pytest.mark.parametrize("command", ["serve", "migrate"])
@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "2147484"])
def test_a_timeout_that_is_no_bound_is_refused_naming_the_flag_and_range(
    command: str, value: str
) -> None:
    cli = build_cli(load_plugins())
    for args, env in [
        (["--statement-timeout-seconds", value], {}),
        ([], {"BUGLESS_STATEMENT_TIMEOUT_SECONDS": value}),
    ]:
        result = CliRunner().invoke(
            cli, ["model", command, *args], env={"BUGLESS_DATABASE_URL": UNREACHABLE, **env}
        )
        assert result.exit_code == 2, result.output
        assert (
            "--statement-timeout-seconds (BUGLESS_STATEMENT_TIMEOUT_SECONDS) must be more "
            "than 0 and at most 2147483"
        ) in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize(("value", "ms"), [("30", 30_000), ("0.25", 250), ("0.0001", 1)])
def test_the_variable_sets_the_bound_in_the_servers_milliseconds(value: str, ms: int) -> None:
    environ = {"BUGLESS_DATABASE_URL": UNREACHABLE, "BUGLESS_STATEMENT_TIMEOUT_SECONDS": value}
    settings = settings_from_environ(ModelSettings, environ)
    assert settings.statement_timeout_seconds == float(value)
    assert settings.statement_timeout_ms == ms


def test_the_default_is_thirty_seconds_and_a_bad_value_names_the_variable() -> None:
    assert ModelSettings(database_url=UNREACHABLE).statement_timeout_ms == 30_000
    environ = {"BUGLESS_DATABASE_URL": UNREACHABLE, "BUGLESS_STATEMENT_TIMEOUT_SECONDS": "0"}
    with pytest.raises(InvalidArgument, match="BUGLESS_STATEMENT_TIMEOUT_SECONDS"):
        settings_from_environ(ModelSettings, environ)
