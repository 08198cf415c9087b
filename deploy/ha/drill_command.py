"""The failover drill's command line: ``python deploy/ha/drill.py [options]``.

What the drill does is :mod:`drill`'s (its docstring lists the phases and
the invariants); this module reads the options into a
:class:`~drill.DrillSettings`, runs the drill as often as ``--repeat`` asks,
and prints each run's table (:func:`format_table`). ``drill.py`` run as a
script calls :func:`main`, so the command is the one deploy/README.md shows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import drill
from drill import PHASES, DrillReport, DrillSettings, run_drill

#: Issue ids and ports, folded so that failures group by kind.
_NUMBERS = re.compile(r"(?<=/issues/)\d+|(?<=componentid:)\d+|(?<=', )\d+(?=\))")


def format_table(report: DrillReport) -> str:
    """The per-phase table, its legend and what was observed."""
    header = (
        f"{'phase':<18} {'sent':>6} {'ok':>6} {'failed':>6} {'retried':>7} "
        f"{'acked writes':>12} {'found':>6} {'recovery s':>10}"
    )
    lines = [header, "-" * len(header)]
    for name, phase in report.phases.items():
        t = phase.tally
        recovery = "-" if phase.recovery_seconds is None else f"{phase.recovery_seconds:.1f}"
        lines.append(
            f"{name:<18} {t.sent:>6} {t.succeeded:>6} {t.failed:>6} {t.retried:>7} "
            f"{t.acknowledged_writes:>12} {phase.writes_found:>6} {recovery:>10}"
        )
    lines += [
        "",
        "recovery: rolling restart and kill model: seconds from the fault to the last failed",
        "request (0.0: none failed); restart postgres: seconds from PostgreSQL accepting",
        "connections again to both Model replicas reporting SERVING.",
        "",
    ]
    for name, phase in report.phases.items():
        for note in phase.notes:
            lines.append(f"[{name}] {note}")
        errors: dict[str, int] = {}
        for failure in phase.tally.failures:
            key = f"{failure.operation}: {_NUMBERS.sub('N', failure.error)[:150]}"
            errors[key] = errors.get(key, 0) + 1
        for error, count in sorted(errors.items(), key=lambda item: -item[1]):
            lines.append(f"[{name}] failed x{count}: {error}")
    refused = sum(report.plaintext_refused.values())
    lines.append(
        f"[mutual TLS] plaintext refused by {refused}/{len(report.plaintext_refused)} gRPC "
        f"endpoints; SERVING over mutual TLS: {sum(report.mutual_tls_serving.values())}/"
        f"{len(report.mutual_tls_serving)}; duplicate creates: {report.duplicate_creates}"
    )
    violations = report.violations()
    lines.append("")
    lines.append("invariants: " + ("all held" if not violations else "VIOLATED"))
    lines += [f"  - {v}" for v in violations]
    return "\n".join(lines)


def _absolute(text: str) -> Path:
    """``--keep`` as an absolute path.

    The drill writes the directory's paths into what other processes read
    (haproxy.cfg, the services' settings), so a relative one is made absolute
    here, against the directory the drill was started in.
    """
    return Path(text).absolute()


def argument_parser() -> argparse.ArgumentParser:
    """The command line: the drill's form, which phases, how often, how heavy a load."""
    parser = argparse.ArgumentParser(
        description=drill.__doc__.splitlines()[0] if drill.__doc__ else None
    )
    parser.add_argument("--reduced", action="store_true", help="the shorter CI form")
    parser.add_argument("--no-web", dest="web", action="store_false", help="without web tier")
    parser.add_argument(
        "--keep",
        type=_absolute,
        help="keep logs and configs in this directory (relative: to the current one)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, of {', '.join(PHASES)} (default: all)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the drill this many times (a new topology each)"
    )
    parser.add_argument("--bots", type=int, help="bot identities of the API load")
    parser.add_argument("--api-rate", type=float, help="requests per second of each bot")
    return parser


def settings_from_args(args: argparse.Namespace, directory: Path) -> DrillSettings:
    """The drill the command line asks for, run in ``directory``.

    Raises:
        SystemExit: A phase name that is not one of :data:`PHASES` (exit 2, naming them).
    """
    shape = DrillSettings.reduced if args.reduced else DrillSettings.full
    settings = shape(directory, with_web=args.web)
    names = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = [name for name in names if name not in PHASES]
    if unknown or not names:
        named = ", ".join(unknown) or "none"
        argument_parser().error(f"--phases: {named}; choose from {', '.join(PHASES)}")
    wanted = {PHASES[name] for name in names}
    settings = replace(settings, phases=tuple(p for p in PHASES.values() if p in wanted))
    if args.bots is not None:
        settings = replace(settings, topology=replace(settings.topology, bots=args.bots))
    if args.api_rate is not None:
        settings = replace(settings, load=replace(settings.load, api_rate=args.api_rate))
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the drill, print the table; exit 1 if an invariant failed.

    With ``--repeat N`` each run gets a topology of its own (under
    ``--keep``: ``run-1``, ``run-2``, ...), each table is printed as it ends,
    and the last line counts the runs whose invariants did not all hold.
    """
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: {args.repeat}; at least 1")
    violated = 0
    for run in range(1, args.repeat + 1):
        with contextlib.ExitStack() as stack:
            if args.keep is not None:
                directory: Path = args.keep if args.repeat == 1 else args.keep / f"run-{run}"
            else:
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="drill-")))
            report = asyncio.run(run_drill(settings_from_args(args, directory)))
            if args.repeat > 1:
                print(f"== run {run} of {args.repeat}")
            print(format_table(report), flush=True)
            violated += bool(report.violations())
    if args.repeat > 1:
        print(f"== {violated} of {args.repeat} runs violated an invariant")
    return 1 if violated else 0
