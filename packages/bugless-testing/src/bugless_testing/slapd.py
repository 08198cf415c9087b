"""A throwaway OpenLDAP ``slapd`` on loopback, for the LDAP backend's tests.

The fixture writes a ``slapd.conf`` (``slapd -f``, not cn=config: one file is
easier to read when a test fails), starts slapd in the foreground with
``-d 0`` so the process is ours to stop, and seeds it over the wire with
``ldapadd`` so the memberOf overlay sees every group change (``slapadd``
would bypass overlays). The server listens on plain LDAP (StartTLS capable)
and on LDAPS, with certificates from a per-run trustme CA.

The directory is seeded once per session; tests that change it (a rename)
use their own users, and tests that stop a server start their own
(:func:`start_slapd`). ``slapd_replica.py`` builds a provider and a syncrepl
consumer from the same pieces.

Ports are bound race-free: slapd cannot inherit a listening socket, so the
fixture holds each port with a bound (not listening) ``SO_REUSEADDR`` socket
for the server's whole life. slapd sets ``SO_REUSEADDR`` too and can bind it,
while the kernel hands the port to nobody else (not to ``bind(0)``, not to an
explicit bind), also between a kill and a restart on the same port. A server
counts as started only once its own process holds the listening socket.

Debian packages: ``slapd`` and ``ldap-utils`` (``slapd``, ``ldapadd``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from bugless_dev.processes import reserve_port

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
LDAPPASSWD = shutil.which("ldappasswd") or "/usr/bin/ldappasswd"
LDAPMODIFY = shutil.which("ldapmodify") or "/usr/bin/ldapmodify"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=bugless,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,ou=services,{BASE_DN}"
READER_PASSWORD = "reader-secret"
#: The account a syncrepl consumer reads the provider as (every attribute, no limits).
REPLICATOR_DN = f"cn=replicator,ou=services,{BASE_DN}"
REPLICATOR_PASSWORD = "replicator-secret"
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
        """Their entry's DN."""
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
        f"dn: {REPLICATOR_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: replicator\nuserPassword: {ssha(REPLICATOR_PASSWORD)}",
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


def slapd_conf(
    root: Path,
    tls: trustme.LeafCert,
    ca_file: Path,
    *,
    modules: Iterable[str] = ("memberof",),
    database: str = "overlay memberof\nmemberof-refint TRUE\n",
) -> str:
    """The ``slapd.conf`` of one server: schemas, TLS, one mdb database, the ACLs.

    Args:
        root: The server's directory (certificates, pid file and data go here).
        tls: Its certificate.
        ca_file: PEM of the CA that issued it.
        modules: Modules loaded besides ``back_mdb``.
        database: Directives appended to the database section (overlays,
            ``syncrepl``); ACLs come after them.
    """
    cert_file = root / "server.pem"
    key_file = root / "server.key"
    tls.cert_chain_pems[0].write_to_path(str(cert_file))
    tls.private_key_pem.write_to_path(str(key_file))
    schemas = "\n".join(
        f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    loads = "\n".join(f"moduleload {name}" for name in ("back_mdb", *modules))
    return f"""{schemas}
modulepath {MODULE_DIR}
{loads}
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
{database}
limits dn.exact="{REPLICATOR_DN}" size=unlimited time=unlimited

# Passwords are for binding only; nothing else is readable without the service
# account, which proves the backend searches as that account and not anonymously.
access to attrs=userPassword
  by self write
  by dn.exact="{REPLICATOR_DN}" read
  by anonymous auth
  by * none
access to *
  by dn.exact="{READER_DN}" read
  by dn.exact="{REPLICATOR_DN}" read
  by self read
  by * none
"""


def _listening_socket_inodes(port: int) -> set[str]:
    """Inodes of the loopback sockets listening on ``port`` (``/proc/net/tcp``)."""
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        columns = line.split()
        local, state, inode = columns[1], columns[3], columns[9]
        if state == "0A" and int(local.rpartition(":")[2], 16) == port:
            found.add(inode)
    return found


def holds_listener(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the socket listening on ``port``.

    A successful connect would not prove it: another process could be
    listening there. Where there is no ``/proc`` (not Linux), a connect is the
    best evidence there is.
    """
    if not Path("/proc/net/tcp").exists():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False
    wanted = {f"socket:[{inode}]" for inode in _listening_socket_inodes(port)}
    if not wanted:
        return False
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in wanted:
                    return True
    return False


@dataclass
class Slapd:
    """One slapd process on loopback and what a test needs to talk to it.

    The ports stay reserved until :meth:`close`, so the server can be killed
    and started again on the same URLs (a syncrepl consumer keeps pointing
    at its provider).

    Attributes:
        url: ``ldap://127.0.0.1:<port>`` (StartTLS capable).
        ldaps_url: ``ldaps://127.0.0.1:<port>``.
        ca_file: PEM of the CA that signed the server certificate.
        log_operations: Log every operation (``-d stats``) so a test can
            tell which server answered (:meth:`binds_as`).
    """

    root: Path
    ca_file: Path
    log_operations: bool = False
    reservations: tuple[socket.socket, socket.socket] = field(
        default_factory=lambda: (reserve_port(), reserve_port()), repr=False
    )
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: A plain LDAP port of its own for replication (a syncrepl consumer), so the
    #: listen queue of :attr:`port` counts only the clients under test.
    replication_reservation: socket.socket = field(default_factory=reserve_port, repr=False)

    @property
    def replication_url(self) -> str:
        """``ldap://127.0.0.1:PORT`` of the replication-only listener."""
        port: int = self.replication_reservation.getsockname()[1]
        return f"ldap://127.0.0.1:{port}"

    @property
    def port(self) -> int:
        """The plain LDAP port (held by this object for the server's whole life)."""
        port: int = self.reservations[0].getsockname()[1]
        return port

    @property
    def ldaps_port(self) -> int:
        """The LDAPS port."""
        port: int = self.reservations[1].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ldap://127.0.0.1:PORT``."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """``ldaps://127.0.0.1:PORT``."""
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def log(self) -> str:
        """The tail of the server's log, for failure messages."""
        return (self.root / "slapd.log").read_text(errors="replace")[-3000:]

    def start(self) -> None:
        """Start (or restart) slapd on the same ports and data; wait until it listens."""
        log = (self.root / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            [
                SLAPD,
                "-f",
                str(self.root / "slapd.conf"),
                "-h",
                f"{self.url}/ {self.ldaps_url}/ {self.replication_url}/",
                "-d",
                "stats" if self.log_operations else "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while not (
            holds_listener(self.process.pid, self.port)
            and holds_listener(self.process.pid, self.ldaps_port)
            and holds_listener(self.process.pid, self.replication_reservation.getsockname()[1])
        ):
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"slapd did not start listening within 10 s: {self.log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL); the data directory stays."""
        if self.process is None:
            return
        self.resume()  # a stopped process would hold SIGTERM until continued
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nobody answers (a hung server)."""
        assert self.process is not None, "slapd is not running"
        self.process.send_signal(signal.SIGSTOP)
        # The stop takes effect asynchronously: wait until the kernel reports the
        # process stopped, so a probe sent right after cannot still be answered.
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + 5
        while stat.read_text().rpartition(")")[2].split()[0] != "T":
            if time.monotonic() > deadline:
                raise RuntimeError("slapd did not stop within 5 s of SIGSTOP")
            time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause` (harmless on a running server)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, open connections are reset."""
        assert self.process is not None, "slapd is not running"
        self.process.kill()
        self.process.wait(5)
        self.process = None

    @property
    def running(self) -> bool:
        """Whether the process exists (it may be paused)."""
        return self.process is not None and self.process.poll() is None

    def binds_as(self, dn: str) -> int:
        """How many binds as ``dn`` this server has received (``log_operations`` only)."""
        assert self.log_operations, "start the server with log_operations=True"
        needle = f'BIND dn="{dn}" method='.lower()
        return (self.root / "slapd.log").read_text(errors="replace").lower().count(needle)

    def unaccepted_connections(self) -> int:
        """Connections waiting in the listen queue of :attr:`url`.

        While the process is stopped the kernel still completes handshakes
        and queues them, so this counts the clients that tried a hung server.
        """
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] == "0A" and int(columns[1].rpartition(":")[2], 16) == self.port:
                return int(columns[4].partition(":")[2], 16)
        raise RuntimeError(f"nothing listens on {self.url}")

    def close(self) -> None:
        """Stop the server and release its ports."""
        self.stop()
        for sock in (*self.reservations, self.replication_reservation):
            sock.close()

    def ldapadd(self, ldif: str) -> None:
        """Add entries as the rootdn, through the server (so overlays run)."""
        subprocess.run(
            [LDAPADD, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )

    def ldapmodify(self, ldif: str) -> None:
        """Apply an LDIF of changes as the rootdn, through the server."""
        subprocess.run(
            [LDAPMODIFY, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )

    def change_password(self, dn: str, old_password: str, new_password: str) -> None:
        """Change a password as its owner would (RFC 3062 password modify; slapd hashes it)."""
        subprocess.run(
            [
                *(LDAPPASSWD, "-x", "-H", self.url, "-D", dn, "-w", old_password),
                *("-a", old_password, "-s", new_password),
            ],
            check=True,
            capture_output=True,
        )


def new_slapd(root: Path, ca: trustme.CA, *, log_operations: bool = False, **conf: Any) -> Slapd:
    """Write the configuration of a server in ``root`` (not started; ports reserved).

    Other keyword arguments go to :func:`slapd_conf`.
    """
    if not Path(SLAPD).exists():
        pytest.fail(f"{SLAPD} is missing: install the Debian packages slapd and ldap-utils")
    (root / "data").mkdir(parents=True)
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    (root / "slapd.conf").write_text(slapd_conf(root, leaf, ca_file, **conf))
    return Slapd(root=root, ca_file=ca_file, log_operations=log_operations)


def seed(server: Slapd) -> None:
    """Add the base entries, :data:`SEED_USERS` and :data:`SEED_GROUPS`."""
    server.ldapadd(_seed_ldif())


@contextlib.contextmanager
def start_slapd(ca: trustme.CA | None = None) -> Iterator[Slapd]:
    """Start a seeded slapd in a temporary directory; stop and delete it after."""
    with tempfile.TemporaryDirectory(prefix="bugless-slapd-") as tmp:
        server = new_slapd(Path(tmp), ca or trustme.CA())
        try:
            server.start()
            seed(server)
            yield server
        finally:
            server.close()


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
    "REPLICATOR_DN",
    "REPLICATOR_PASSWORD",
    "SEED_USERS",
    "SeedUser",
    "Slapd",
    "holds_listener",
    "new_slapd",
    "own_slapd",
    "reserve_port",
    "seed",
    "slapd_conf",
    "slapd_server",
    "ssha",
    "start_slapd",
]
