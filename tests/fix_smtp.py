"""Real SMTP servers for the mail tests: aiosmtpd on free 127.0.0.1 ports, started once per session.

- ``smtp_server``: plain SMTP, AUTH allowed without TLS (user ``reports``, password ``s3cret``);
  any recipient whose address starts with ``refused`` gets ``550 5.1.1``. Each accepted message
  is kept (``server.received``).
- ``smtp_tls_server``: STARTTLS required before anything else and before AUTH, with a
  self-signed certificate for 127.0.0.1 (``cert_file``: point ``SSL_CERT_FILE`` at it to trust it).
- ``smtps_server``: the same over TLS from the first byte (SMTPS).
- ``small_smtp_server``: plain SMTP that takes messages of at most 20 kB (``SIZE 20000``).
- ``silent_smtp``: a socket that accepts connections (the kernel's backlog) and never says a word.
- ``closed_port``: a port nothing listens on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

USER, PASSWORD = "reports", "s3cret"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    login: str | None

    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    """aiosmtpd's handler: refuses the ``refused*`` recipients, keeps every message it accepts."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("refused"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                          session.auth_data))
        return "250 2.0.0 Ok: queued"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=USER if ok else None)


@dataclass
class SmtpServer:
    host: str
    port: int
    recorder: Recorder
    cert_file: Path | None = None

    def to(self, address: str) -> list[Received]:
        """The messages that reached ``address``."""
        with self.recorder.lock:
            return [r for r in self.recorder.received if address in r.recipients]

    def config(self, **more: Any) -> dict[str, Any]:
        """A ``mail:`` section for this server."""
        return {"host": self.host, "port": self.port, "from": "Reports <reports@example.com>", "timeout": 10,
                **more}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(recorder: Recorder, **kwargs: Any) -> tuple[Any, int]:
    from aiosmtpd.controller import Controller

    for _ in range(5):  # a free port can be taken between the probe and the bind
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticate, **kwargs)
        try:
            controller.start()
        except OSError:
            continue
        return controller, port
    raise RuntimeError("no free port for the test SMTP server")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller, port = _start(recorder, auth_require_tls=False)
    try:
        yield SmtpServer("127.0.0.1", port, recorder)
    finally:
        controller.stop()


SMALL_LIMIT = 20_000


@pytest.fixture(scope="session")
def small_smtp_server() -> Iterator[SmtpServer]:
    recorder = Recorder()
    controller, port = _start(recorder, auth_require_tls=False, data_size_limit=SMALL_LIMIT)
    try:
        yield SmtpServer("127.0.0.1", port, recorder)
    finally:
        controller.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbcli test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """The self-signed certificate's file, and a server context holding it."""
    cert_file, key_file = self_signed(tmp_path_factory.mktemp("smtp-tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.fixture(scope="session")
def smtp_tls_server(smtp_certificate: tuple[Path, ssl.SSLContext]) -> Iterator[SmtpServer]:
    cert_file, context = smtp_certificate
    recorder = Recorder()
    controller, port = _start(recorder, tls_context=context, require_starttls=True, auth_require_tls=True)
    try:
        yield SmtpServer("127.0.0.1", port, recorder, cert_file)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def smtps_server(smtp_certificate: tuple[Path, ssl.SSLContext]) -> Iterator[SmtpServer]:
    """TLS from the first byte (SMTPS, what ``mail.ssl`` speaks)."""
    cert_file, context = smtp_certificate
    recorder = Recorder()
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls: this connection is TLS throughout
    controller, port = _start(recorder, ssl_context=context, auth_require_tls=False)
    try:
        yield SmtpServer("127.0.0.1", port, recorder, cert_file)
    finally:
        controller.stop()


@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """The port of a server that takes the connection and never answers (no greeting, nothing)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # connections complete in the backlog; nobody accepts, nobody writes
        yield int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    return free_port()
