"""Regenerate (or check) the betterproto2 code committed under src/bugless_proto.

Why a script and not a build hook: the generated code is committed so that a
plain ``pip install`` needs no protoc; this script is what ``nox -s proto``
runs, and ``--check`` makes CI fail when the committed code drifts from the
``.proto`` files or from the pinned compiler.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = PACKAGE_ROOT / "proto"
OUTPUT_DIR = PACKAGE_ROOT / "src" / "bugless_proto"
# What the compiler writes; everything else in OUTPUT_DIR is hand-written.
GENERATED = ("bugless", "google", "message_pool.py", "google_proto_descriptor_pool.py")
OPTIONS = "client_generation=async,server_generation=async,google_protobuf_descriptors"


def _generate(into: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_betterproto2_out={into}",
            f"--python_betterproto2_opt={OPTIONS}",
            *protos,
        ],
        check=True,
        cwd=PROTO_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _differences(left: Path, right: Path) -> list[str]:
    diffs: list[str] = []
    for name in GENERATED:
        a, b = left / name, right / name
        if a.is_dir() and b.is_dir():
            cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
            stack = [(cmp, name)]
            while stack:
                current, prefix = stack.pop()
                diffs += [f"{prefix}/{n}" for n in current.left_only + current.right_only]
                for n in current.common_files:
                    if not filecmp.cmp(
                        Path(current.left) / n, Path(current.right) / n, shallow=False
                    ):
                        diffs.append(f"{prefix}/{n}")
                stack += [(sub, f"{prefix}/{n}") for n, sub in current.subdirs.items()]
        elif not (a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)):
            diffs.append(name)
    return diffs


def main() -> int:
    """Regenerate, or with --check compare; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        _generate(fresh)
        if args.check:
            diffs = _differences(fresh, OUTPUT_DIR)
            if diffs:
                print("generated code is out of date; run `nox -s proto`:", *diffs, sep="\n  ")
                return 1
            print("generated code matches the .proto files")
            return 0
        for name in GENERATED:
            target = OUTPUT_DIR / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            source = fresh / name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
    print(f"regenerated {OUTPUT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
