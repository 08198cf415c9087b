"""The failover drill, reduced: real replicas behind HAProxy, faults under load.

Runs deploy/ha/drill.py's reduced form once (about a minute and a half on a
2-CPU machine) and checks what must hold whatever the timing: no
acknowledged write is lost in any phase, a rolling restart fails no
request, and the Model reports NOT_SERVING while PostgreSQL is down and
SERVING again afterwards without being restarted, with every gRPC hop on
mutual TLS (plaintext refused everywhere). Timings are printed, not
asserted. Needs Debian's ``haproxy`` (``/usr/sbin/haproxy``) and every
bugless package installed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ha"))

from drill import KILL, POSTGRES, ROLLING, DrillReport, DrillSettings, PhaseResult, run_drill
from drill_command import argument_parser, format_table, settings_from_args
from ha_load import PhaseTally


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DrillReport:
    """One reduced drill for every test of this module."""
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        pytest.fail("the failover drill needs HAProxy: apt-get install haproxy")
    settings = DrillSettings.reduced(tmp_path_factory.mktemp("ha-drill"))
    # A thread of its own: asyncio.run would otherwise unset the event loop
    # pytest-asyncio keeps for the session's async tests.
    with ThreadPoolExecutor(max_workers=1) as executor:
        result = executor.submit(asyncio.run, run_drill(settings)).result()
    print(format_table(result))
    return result


def test_every_phase_ran_under_load(report: DrillReport) -> None:
    assert list(report.phases) == [ROLLING, KILL, POSTGRES]
    for name, phase in report.phases.items():
        assert phase.tally.sent > 0, name
        assert phase.tally.acknowledged_writes > 0, name


@pytest.mark.parametrize("phase", [ROLLING, KILL, POSTGRES])
def test_no_acknowledged_write_is_lost(report: DrillReport, phase: str) -> None:
    result = report.phases[phase]
    assert result.missing == []
    assert result.writes_found == result.tally.acknowledged_writes


def test_rolling_restart_fails_no_request(report: DrillReport) -> None:
    phase = report.phases[ROLLING]
    tally = phase.tally
    # The notes time each tier's SIGTERM and each failure from the phase's start.
    assert tally.failed == 0, "\n".join(phase.notes)
    assert tally.succeeded == tally.sent


def test_model_is_not_serving_while_the_database_is_down(report: DrillReport) -> None:
    assert len(report.model_not_serving_during_outage) == 2
    assert all(report.model_not_serving_during_outage.values())


def test_model_serves_again_after_the_database_returns_without_a_restart(
    report: DrillReport,
) -> None:
    assert len(report.model_serving_after_outage) == 2
    assert all(report.model_serving_after_outage.values())
    assert report.model_pids_unchanged


def test_the_drill_reports_no_violation(report: DrillReport) -> None:
    assert report.violations() == []


def test_every_grpc_hop_is_mutual_tls(report: DrillReport) -> None:
    # Each Model, Authenticator and API replica (the replacements too) and
    # HAProxy's Model and Authenticator frontends: plaintext gets nothing.
    assert len(report.plaintext_refused) >= 2 + 2 + 1 + 2
    assert all(report.plaintext_refused.values()), report.plaintext_refused
    assert all(report.mutual_tls_serving.values()), report.mutual_tls_serving


def test_no_idempotency_key_created_two_issues(report: DrillReport) -> None:
    assert report.duplicate_creates == 0


def test_clients_recover_from_a_killed_model_replica(report: DrillReport) -> None:
    assert report.kill_recovered


def test_the_command_line_runs_the_phases_asked_for_in_their_order_under_the_load_asked_for(
    tmp_path: Path,
) -> None:
    """How a race seen once in one phase is chased: that phase alone, heavier, many times."""
    args = argument_parser().parse_args(
        ["--reduced", "--phases", "postgres,rolling", "--bots", "4", "--api-rate", "20"]
    )
    settings = settings_from_args(args, tmp_path)
    assert settings.phases == (ROLLING, POSTGRES)
    assert (settings.topology.bots, settings.load.api_rate) == (4, 20.0)
    assert settings.topology.drain_seconds == DrillSettings.reduced(tmp_path).topology.drain_seconds
    every = settings_from_args(argument_parser().parse_args([]), tmp_path)
    assert every.phases == (ROLLING, KILL, POSTGRES)


def test_an_unknown_phase_is_refused_naming_the_phases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        settings_from_args(argument_parser().parse_args(["--phases", "rolling,restart"]), tmp_path)
    assert refused.value.code == 2
    assert "--phases: restart; choose from rolling, kill, postgres" in capsys.readouterr().err


def test_drill_py_run_as_a_script_is_the_command_line() -> None:
    """``python deploy/ha/drill.py`` stays the command (deploy/README.md), now that
    its command line is drill_command's: the same help, the same refusal, exit 2
    before anything starts."""
    script = Path(__file__).resolve().parents[1] / "ha" / "drill.py"
    shown = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "The failover drill: real replicas behind HAProxy" in shown.stdout
    assert "--keep KEEP" in shown.stdout
    refused = subprocess.run(
        [sys.executable, str(script), "--phases", "restart"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert "--phases: restart; choose from rolling, kill, postgres" in refused.stderr


def test_a_relative_keep_is_made_absolute_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory's paths go into haproxy.cfg and the services' settings, read by
    processes that may not share the drill's directory (deploy/README.md's example
    is ``--keep drill-logs``)."""
    monkeypatch.chdir(tmp_path)
    assert argument_parser().parse_args(["--keep", "drill-logs"]).keep == tmp_path / "drill-logs"


def test_a_phase_not_run_has_no_invariant_to_violate() -> None:
    report = DrillReport(phases={ROLLING: PhaseResult(PhaseTally(ROLLING, sent=3, succeeded=3))})
    report.plaintext_refused = {"model replica": True}
    report.mutual_tls_serving = {"model replica": True}
    assert report.violations() == []
    report.phases[POSTGRES] = PhaseResult(PhaseTally(POSTGRES))
    assert any(v.startswith("restart postgres: not every") for v in report.violations())
