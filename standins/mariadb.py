"""A throwaway MariaDB server with TLS, standing in for RDS MySQL on this machine.

Used by the test suite and by the local rehearsal. The server lives in a temporary
directory, listens on a free loopback port, and presents a certificate signed by a CA
generated on the spot, so clients can (and must) verify it the way they verify RDS's
certificate bundle in real use.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ADMIN_USER = "appdb_admin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def make_ca(directory: Path, common_name: str) -> tuple[Path, rsa.RSAPrivateKey, x509.Certificate]:
    """A self-signed CA; returns (pem path, key, certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{common_name.replace(' ', '-').lower()}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    directory: Path, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    """A server certificate for localhost/127.0.0.1 signed by the given CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "server-cert.pem"
    key_path = directory / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@dataclass
class MariaDBServer:
    """A running MariaDB server; `start()` it, `stop()` it (or use it as a context manager)."""

    # Where the server keeps everything; start() makes a temporary one unless given, stop()
    # removes it. Describing a server (as a child process of the tests does) creates nothing.
    base_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    admin_user: str = ADMIN_USER
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    require_tls: bool = True
    process: subprocess.Popen[bytes] | None = None
    ca_path: Path = Path()
    # A second CA that did not sign the server certificate: for "untrusted server" tests.
    foreign_ca_path: Path = Path()

    @property
    def home(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("this MariaDB server has not been started")
        return self.base_dir

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def socket_path(self) -> Path:
        return self.home / "mysqld.sock"

    @property
    def log_path(self) -> Path:
        return self.home / "error.log"

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install_db = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        if not Path(mariadbd).exists():
            raise RuntimeError(
                "mariadbd not found: run `make setup` (installs Debian's mariadb-server)"
            )
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="mariadb-"))
        tls_dir = self.home / "tls"
        tls_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path, ca_key, ca_cert = make_ca(tls_dir, "Local Test CA")
        self.foreign_ca_path, _, _ = make_ca(tls_dir, "Foreign CA")
        cert_path, key_path = make_server_cert(tls_dir, ca_key, ca_cert)
        user_args = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                *user_args,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.port = self.port or free_port()
        args = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.home / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--ssl-ca={self.ca_path}",
            f"--ssl-cert={cert_path}",
            f"--ssl-key={key_path}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            # Migrations are DDL-heavy; durability of a throwaway server is not the point.
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            *user_args,
        ]
        if self.require_tls:
            args.append("--require-secure-transport=ON")
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited early:\n{self._log_tail()}")
            try:
                conn = self.root_connection()
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mariadbd did not start in {timeout}s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.1)
        with conn.cursor() as cur:
            cur.execute(
                "CREATE USER %s@'%%' IDENTIFIED BY %s", (self.admin_user, self.admin_password)
            )
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO `{self.admin_user}`@'%' WITH GRANT OPTION")
        conn.close()
        return self

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no error log)"

    def root_connection(self, database: str | None = None) -> pymysql.connections.Connection:
        """A superuser connection over the unix socket (socket auth as the OS user)."""
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=2,
        )

    def connect(
        self,
        database: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **kwargs: object,
    ) -> pymysql.connections.Connection:
        """A TCP connection with a verified TLS session, as the admin user by default."""
        options: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": user or self.admin_user,
            "password": self.admin_password if password is None else password,
            "database": database,
            "autocommit": True,
            # Note: pymysql's ssl_verify_* keywords replace an `ssl` dict wholesale, so
            # pass the CA through ssl_ca alongside them.
            "ssl_ca": str(self.ca_path),
            "ssl_verify_cert": True,
            "ssl_verify_identity": True,
            "connect_timeout": 5,
        }
        options.update(kwargs)
        return pymysql.connect(**options)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        conn = self.root_connection()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        conn.close()
        return name

    def client_args(self) -> list[str]:
        """The `mariadb`/`mariadb-dump` options that reach this server as its admin over
        verified TLS (the password goes in MYSQL_PWD, never on a command line)."""
        return [
            "--no-defaults",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--user={self.admin_user}",
            f"--ssl-ca={self.ca_path}",
        ]

    def dsn(self, database: str) -> str:
        return f"mysql://{self.admin_user}:{self.admin_password}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
