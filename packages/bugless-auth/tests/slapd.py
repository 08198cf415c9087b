"""A throwaway OpenLDAP ``slapd`` on loopback, for the LDAP backend's tests.

The fixture writes a ``slapd.conf`` (``slapd -f``, not cn=config: one file is
easier to read when a test fails), starts slapd in the foreground with
``-d 0`` so the process is ours to stop, and seeds it over the wire with
``ldapadd`` so the memberOf overlay sees every group change (``slapadd``
would bypass overlays). The server listens on plain LDAP (StartTLS capable)
and on LDAPS, with certificates from a per-run trustme CA.

The directory is seeded once per session; tests that change it (a rename)
use their own users, and tests that stop a server start their own
(:func:`start_slapd`).

Debian packages: ``slapd`` and ``ldap-utils`` (``slapd``, ``ldapadd``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from bugless_testing.ports import free_port

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=bugless,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,ou=services,{BASE_DN}"
READER_PASSWORD = "reader-secret"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"


@dataclass(frozen=True)
class SeedUser:
    """A person seeded into the directory, with the groups they belong to."""

    uid: str
    password: str
    display_name: str
    mail: str
    groups: tuple[str, ...] = ()

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_DN}"


#: Users every session directory holds. ``erin`` exists to be renamed.
SEED_USERS: tuple[SeedUser, ...] = (
    SeedUser("alice", "alice-pw", "Alice Liddell", "alice@bugless.test", ("admins", "engineers")),
    SeedUser("bob", "bob-pw", "Bob Builder", "bob@bugless.test", ("engineers",)),
    SeedUser("carol", "carol-pw", "Carol Danvers", "carol@bugless.test"),
    SeedUser("erin", "erin-pw", "Erin Rename", "erin@bugless.test", ("engineers",)),
)
SEED_GROUPS: tuple[str, ...] = ("admins", "engineers", "empty")


def ssha(password: str) -> str:
    """Hash a password as slapd's ``{SSHA}`` (salted SHA-1), like slappasswd."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _seed_ldif() -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: bugless\no: bugless",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {ssha(READER_PASSWORD)}",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups",
    ]
    for user in SEED_USERS:
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nuid: {user.uid}\n"
            f"cn: {user.display_name}\nsn: {user.display_name.split()[-1]}\n"
            f"displayName: {user.display_name}\nmail: {user.mail}\n"
            f"userPassword: {ssha(user.password)}"
        )
    for group in SEED_GROUPS:
        members = [u.dn for u in SEED_USERS if group in u.groups]
        # groupOfNames needs at least one member; an empty group names the base.
        lines = "\n".join(f"member: {dn}" for dn in members or [BASE_DN])
        entries.append(
            f"dn: cn={group},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {group}\n{lines}"
        )
    return "\n\n".join(entries) + "\n"


def _slapd_conf(root: Path, tls: trustme.LeafCert, ca_file: Path) -> str:
    cert_file = root / "server.pem"
    key_file = root / "server.key"
    tls.cert_chain_pems[0].write_to_path(str(cert_file))
    tls.private_key_pem.write_to_path(str(key_file))
    schemas = "\n".join(
        f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCACertificateFile {ca_file}
TLSCertificateFile {cert_file}
TLSCertificateKeyFile {key_file}

database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ssha(ADMIN_PASSWORD)}
directory {root}/data
maxsize 16777216
overlay memberof
memberof-refint TRUE

# Passwords are for binding only; nothing else is readable without the service
# account, which proves the backend searches as that account and not anonymously.
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{READER_DN}" read
  by self read
  by * none
"""


@dataclass
class Slapd:
    """One slapd process on loopback and what a test needs to talk to it.

    Attributes:
        url: ``ldap://127.0.0.1:<port>`` (StartTLS capable).
        ldaps_url: ``ldaps://127.0.0.1:<port>``.
        ca_file: PEM of the CA that signed the server certificate.
    """

    root: Path
    port: int
    ldaps_port: int
    ca_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self) -> None:
        """Start (or restart) slapd on the same ports and data; wait until it answers."""
        log = (self.root / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            [
                SLAPD,
                "-f",
                str(self.root / "slapd.conf"),
                "-h",
                f"{self.url}/ {self.ldaps_url}/",
                "-d",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"slapd exited with {self.process.returncode}: "
                    f"{(self.root / 'slapd.log').read_text(errors='replace')[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("slapd did not start listening within 10 s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL); the data directory stays."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def ldapadd(self, ldif: str) -> None:
        """Add entries as the rootdn, through the server (so overlays run)."""
        subprocess.run(
            [LDAPADD, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def start_slapd(ca: trustme.CA | None = None) -> Iterator[Slapd]:
    """Start a seeded slapd in a temporary directory; stop and delete it after."""
    if not Path(SLAPD).exists():
        pytest.fail(f"{SLAPD} is missing: install the Debian packages slapd and ldap-utils")
    ca = ca or trustme.CA()
    with tempfile.TemporaryDirectory(prefix="bugless-slapd-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        (root / "slapd.conf").write_text(_slapd_conf(root, leaf, ca_file))
        server = Slapd(root=root, port=free_port(), ldaps_port=free_port(), ca_file=ca_file)
        server.start()
        try:
            server.ldapadd(_seed_ldif())
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[Slapd]:
    """The session's seeded directory (see :data:`SEED_USERS`)."""
    with start_slapd() as server:
        yield server


@pytest.fixture
def own_slapd() -> Iterator[Slapd]:
    """A directory of the test's own, for tests that stop or restart the server."""
    with start_slapd() as server:
        yield server


__all__ = [
    "ADMIN_DN",
    "ADMIN_PASSWORD",
    "BASE_DN",
    "GROUPS_DN",
    "PEOPLE_DN",
    "READER_DN",
    "READER_PASSWORD",
    "SEED_USERS",
    "SeedUser",
    "Slapd",
    "free_port",
    "own_slapd",
    "slapd_server",
    "ssha",
    "start_slapd",
]
