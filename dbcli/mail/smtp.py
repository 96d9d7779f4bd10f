"""Sending a built message in one SMTP transaction, under one time limit, with one-line errors.

Nothing is half-sent: every recipient is given (RCPT) before the message (DATA), and if the server
refuses any of them the transaction is reset and nobody gets the mail (``smtplib.sendmail`` would
send to the others and return the refusals). A server that accepts every address and refuses one
only after DATA refuses the message as a whole. ``mail.timeout`` bounds the whole exchange: each
step gets the time that is left. Every failure is exit 4 with the server's reply on one line and
the password never in it; missing settings are exit 3.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dbcli.config.model import MailConfig
from dbcli.config.secrets import read_secret
from dbcli.errors import ConfigError, UnreachableError
from dbcli.mail.message import Outgoing

CONFIG_HINT = "add a mail: section (host, from; see docs/configuration.md#mail)"
ACCEPTED_RCPT = (250, 251)  # 251: not local, will forward


def port_of(cfg: MailConfig) -> int:
    """``mail.port``, else the usual port of the connection kind."""
    return cfg.port or (465 if cfg.ssl else 587 if cfg.starttls else 25)


def check(cfg: MailConfig) -> str:
    """``mail.from``, once the settings a send needs are there (exit 3 naming the missing one)."""
    if not cfg.host:
        raise ConfigError("mail is not configured: mail.host is not set", hint=CONFIG_HINT)
    if not cfg.from_:
        raise ConfigError("mail.from is not set: mail needs a sender address", hint=CONFIG_HINT)
    return cfg.from_


class Failed(Exception):
    """Raised inside :func:`send` to leave the exchange with the message to show."""


def send(cfg: MailConfig, outgoing: Outgoing) -> None:
    """Send ``outgoing`` through ``cfg``'s server; UnreachableError (exit 4) on any failure."""
    check(cfg)
    host = cfg.host or ""
    port = port_of(cfg)
    server = f"{host}:{port}"
    password = cfg.password if cfg.password is not None else (
        read_secret(cfg.password_file, "mail.password_file") if cfg.password_file else None)
    deadline = time.monotonic() + cfg.timeout
    who = ", ".join(outgoing.recipients)
    try:
        with _exchange(cfg, host, port, deadline) as (smtp, step):
            if cfg.user and password is not None:
                step()
                try:
                    smtp.login(cfg.user, password)
                except smtplib.SMTPAuthenticationError as e:
                    raise Failed(f"{server} refused the login of {cfg.user}: {reply(e.smtp_code, e.smtp_error)}") from e
                except smtplib.SMTPNotSupportedError as e:
                    raise Failed(f"{server} offers no login (AUTH)"
                                 + ("" if cfg.starttls or cfg.ssl else "; it may want mail.starttls: true")) from e
            _transaction(smtp, step, outgoing, server)
    except Failed as e:
        raise UnreachableError(f"mail to {who}: {_without(str(e), password)}"[:500]) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as e:
        # smtplib reports a read that timed out as a lost connection: the timeout is its context
        if isinstance(e, TimeoutError) or isinstance(e.__context__, TimeoutError):
            raise UnreachableError(f"mail to {who}: {server} did not answer within {cfg.timeout:g}s "
                                   "(mail.timeout)") from None
        raise UnreachableError(f"mail to {who}: {server} closed the connection") from None
    except smtplib.SMTPResponseException as e:
        raise UnreachableError(f"mail to {who} refused by {server}: "
                               f"{_without(reply(e.smtp_code, e.smtp_error), password)}"[:500]) from None
    except ssl.SSLCertVerificationError as e:
        raise UnreachableError(f"mail to {who}: TLS with {server} failed: certificate verify failed: "
                               f"{e.verify_message}", hint="SSL_CERT_FILE names other trusted certificates") from None
    except ssl.SSLError as e:
        raise UnreachableError(f"mail to {who}: TLS with {server} failed: {e.reason or e}") from None
    except smtplib.SMTPException as e:
        raise UnreachableError(f"mail to {who}: {server}: {_without(str(e), password)}"[:500]) from None
    except OSError as e:
        raise UnreachableError(f"mail to {who}: cannot connect to {server}: "
                               f"{(e.strerror or str(e)).lower()}") from None


def _transaction(smtp: smtplib.SMTP, step: StepFn, outgoing: Outgoing, server: str) -> None:
    size = len(outgoing.data)
    options = []
    if smtp.has_extn("size"):
        # RFC 1870: the server's limit is known before anything is sent, so a message too large
        # fails here with both sizes rather than after the upload with a terse 552
        limit = smtp.esmtp_features["size"].strip()
        if limit.isdigit() and 0 < int(limit) < size:
            raise Failed(f"the message ({megabytes(size)}) is larger than {server} accepts "
                         f"({megabytes(int(limit))}, its SIZE)")
        options.append(f"SIZE={size}")
    step()
    code, text = smtp.mail(outgoing.sender, options)
    if code != 250:
        raise Failed(f"sender {outgoing.sender} refused by {server}: {reply(code, text)}")
    refused = []
    for rcpt in outgoing.recipients:
        step()
        code, text = smtp.rcpt(rcpt)
        if code not in ACCEPTED_RCPT:
            refused.append((rcpt, reply(code, text)))
    if refused:
        step()
        smtp.rset()  # before DATA: the server drops the transaction, nobody gets the message
        raise Failed(f"{', '.join(r for r, _ in refused)} refused by {server}: {refused[0][1]}"
                     + (" (nobody was sent the mail)" if len(refused) < len(outgoing.recipients) else ""))
    step()
    code, text = smtp.data(outgoing.data)
    if code != 250:
        raise Failed(f"message refused by {server}: {reply(code, text)}")
    try:
        step()
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the server took the message (250 after DATA): a lost goodbye changes nothing


class StepFn:
    """Gives the socket the time left before the next command (TimeoutError when none is)."""

    def __init__(self, smtp: smtplib.SMTP, deadline: float) -> None:
        self.smtp, self.deadline = smtp, deadline

    def __call__(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if self.smtp.sock is not None:
            self.smtp.sock.settimeout(left)


@contextmanager
def _exchange(cfg: MailConfig, host: str, port: int, deadline: float) -> Iterator[tuple[smtplib.SMTP, StepFn]]:
    """A connected session, greeted, upgraded to TLS when configured; closed on the way out."""
    helo = cfg.helo or socket.gethostname()  # smtplib's default, getfqdn(), can wait on the DNS
    timeout = max(0.001, deadline - time.monotonic())
    context = ssl.create_default_context()
    try:
        # connected (and greeted) by the constructor: given the host, it also checks the certificate's name
        smtp = (smtplib.SMTP_SSL(host, port, local_hostname=helo, timeout=timeout, context=context) if cfg.ssl
                else smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout))
    except smtplib.SMTPConnectError as e:
        raise Failed(f"{host}:{port} refused the connection: {reply(e.smtp_code, e.smtp_error)}") from e
    step = StepFn(smtp, deadline)
    try:
        step()
        smtp.ehlo_or_helo_if_needed()
        if cfg.starttls:
            if not smtp.has_extn("starttls"):
                raise Failed(f"{host}:{port} does not offer STARTTLS (mail.starttls is true)")
            step()
            smtp.starttls(context=context)
            step()
            smtp.ehlo()
        yield smtp, step
    finally:
        smtp.close()


def reply(code: int, text: bytes | str) -> str:
    """A server reply on one line: ``550 5.1.1 no such user``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(f"{code} {text}".split())


def megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def _without(text: str, secret: str | None) -> str:
    # a server that echoes what it was sent must not put the password on the terminal
    return text.replace(secret, "***") if secret else text
