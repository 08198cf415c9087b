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
from typing import NamedTuple

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class Target(NamedTuple):
    """One set of .proto files and where their generated code is committed."""

    proto_dir: Path
    output_dir: Path
    options: str
    generated: tuple[str, ...]  # what the compiler writes; the rest is hand-written


TARGETS = (
    Target(
        PACKAGE_ROOT / "proto",
        PACKAGE_ROOT / "src" / "bugless_proto",
        "client_generation=async,server_generation=async,google_protobuf_descriptors",
        ("bugless", "google", "message_pool.py", "google_proto_descriptor_pool.py"),
    ),
    # The wire converter's test messages (tests/test_wire.py): every field shape.
    Target(
        PACKAGE_ROOT / "tests" / "wire_sample" / "proto",
        PACKAGE_ROOT / "tests" / "wire_sample",
        "google_protobuf_descriptors",
        (
            "__init__.py",
            "wiresample",
            "google",
            "message_pool.py",
            "google_proto_descriptor_pool.py",
        ),
    ),
)


def _generate(target: Target, into: Path) -> None:
    protos = sorted(str(p.relative_to(target.proto_dir)) for p in target.proto_dir.rglob("*.proto"))
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{target.proto_dir}",
            f"--python_betterproto2_out={into}",
            f"--python_betterproto2_opt={target.options}",
            *protos,
        ],
        check=True,
        cwd=target.proto_dir,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _differences(generated: tuple[str, ...], left: Path, right: Path) -> list[str]:
    diffs: list[str] = []
    for name in generated:
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
    diffs: list[str] = []
    for target in TARGETS:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp)
            _generate(target, fresh)
            if args.check:
                diffs += [
                    str((target.output_dir / d).relative_to(PACKAGE_ROOT))
                    for d in _differences(target.generated, fresh, target.output_dir)
                ]
                continue
            for name in target.generated:
                path = target.output_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
                source = fresh / name
                if source.is_dir():
                    shutil.copytree(source, path)
                else:
                    shutil.copy2(source, path)
        print(f"regenerated {target.output_dir}")
    if args.check:
        if diffs:
            print("generated code is out of date; run `nox -s proto`:", *diffs, sep="\n  ")
            return 1
        print("generated code matches the .proto files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
