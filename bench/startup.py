"""How long a ``bugless`` command takes to start, and how much of it is loading plugins.

    python -m bench.startup [--runs 10] [--command "model serve --help"] \
        [--before PATH[:PATH...]] [--after PATH[:PATH...]]

Every service starts through the ``bugless`` CLI, which loads the installed
plugins before anything else (:func:`bugless_core.plugins.load_plugins`).
Each run starts a fresh interpreter that runs the command with
``load_plugins`` timed in place (the command's own call, not a second one),
and reports its own CPU time; the parent measures the whole process's wall
and CPU time. With ``--before`` (the ``packages/*/src`` of an older
checkout, as a ``PYTHONPATH``) every run measures both, one after the
other, the order alternating, so the machine's load falls on both alike.
``--after`` gives the current code the same way (a copy of this checkout's
``packages/*/src``): ``sys.path`` is then as long on both sides, and plugin
discovery reads every entry of it. Prints the median and the range over
the runs, and the 1-minute load average. One run of each side first is not
counted: it writes the bytecode a fresh copy lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

from bench._services import load_average

#: The child: run the command, timing its load_plugins() call in CPU and wall seconds.
_CHILD = """
import atexit, json, sys, time
import bugless_core.cli
plugins = {}
load_plugins = bugless_core.cli.load_plugins
def timed(*args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        return load_plugins(*args, **kwargs)
    finally:
        plugins.update(cpu=time.process_time() - cpu, wall=time.perf_counter() - wall)
def report():
    with open(sys.argv[1], "w") as out:
        json.dump(plugins, out)
atexit.register(report)
bugless_core.cli.load_plugins = timed
bugless_core.cli.main(sys.argv[2:])
"""


def _run_once(command: list[str], pythonpath: str | None) -> dict[str, float]:
    """One fresh interpreter running ``bugless <command>``: its times in ms."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both sides run from cached bytecode
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    marker = f"/tmp/bench-startup-{os.getpid()}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _CHILD, marker, *command],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(marker) as inner:
        plugins = json.load(inner)
    os.unlink(marker)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "process wall": wall * 1000,
        "process CPU": cpu * 1000,
        "load_plugins wall": plugins["wall"] * 1000,
        "load_plugins CPU": plugins["cpu"] * 1000,
    }


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--command", default="model serve --help", help="bugless arguments")
    parser.add_argument(
        "--before", default="", help="PYTHONPATH of an older checkout's packages/*/src"
    )
    parser.add_argument(
        "--after", default="", help="PYTHONPATH of a copy of this checkout's packages/*/src"
    )
    args = parser.parse_args()
    command = shlex.split(args.command)
    configs: dict[str, str | None] = {"after": args.after or None}
    if args.before:
        configs = {"before": args.before, "after": args.after or None}
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    loads = []
    for pythonpath in configs.values():  # writes the bytecode a copied tree lacks; not counted
        _run_once(command, pythonpath)
    for run in range(args.runs):
        order = list(configs) if run % 2 == 0 else list(reversed(configs))
        for name in order:
            figures[name].append(_run_once(command, configs[name]))
        loads.append(os.getloadavg()[0])
    print(f"bugless {args.command}: {args.runs} runs, median (min-max) ms")
    print(f"{'':8} " + " | ".join(f"{key:>22}" for key in figures[next(iter(configs))][0]))
    for name, runs in figures.items():
        cells = []
        for key in runs[0]:
            values = [r[key] for r in runs]
            cells.append(f"{statistics.median(values):7.0f} ({min(values):.0f}-{max(values):.0f})")
        print(f"{name:8} " + " | ".join(f"{cell:>22}" for cell in cells))
    print(f"load {min(loads):.1f}-{max(loads):.1f} (now {load_average()})")


if __name__ == "__main__":
    main()
