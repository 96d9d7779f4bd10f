"""A mail message built whole before anything is sent: checked addresses and subject, an HTML body
with a plain-text alternative, and attachments."""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

from dbcli.errors import ConfigError, DbcliError, InvalidInputError


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/csv"
    data: bytes


@dataclass(frozen=True)
class Outgoing:
    """What one SMTP transaction sends: the envelope and the message's bytes (CRLF lines)."""

    sender: str  # the envelope's MAIL FROM: the address of the From header, without its name
    recipients: tuple[str, ...]
    data: bytes


def address(text: str, what: str, *, error: type[DbcliError] = InvalidInputError) -> tuple[str, str]:
    """``(as written for the header, bare address)`` of one mail address, with or without a display
    name (``Reports <r@example.com>``); ``error`` naming ``what`` when it is not one address."""
    bad = error(f"{what}: not a mail address: {text!r}"[:200])
    if not text.strip() or any(c in text for c in "\r\n\0"):
        raise bad
    try:
        header = policy.default.header_factory("To", text)
        found, defects = header.addresses, header.defects
    except (IndexError, ValueError):  # the parser gives up on some forms (``a@``) instead of noting a defect
        raise bad from None
    if len(found) != 1 or defects or not found[0].domain:
        raise bad
    bare = found[0].addr_spec
    if not bare.isascii():
        raise error(f"{what}: addresses with non-ASCII characters are not supported: {text!r}"[:200])
    return text.strip(), bare


def compose(*, sender: str, to: Sequence[str], subject: str, html: str, text: str,
            attachments: Sequence[Attachment] = ()) -> Outgoing:
    """The whole message: multipart/mixed of (plain text | HTML) and the attachments.

    ``sender`` is ``mail.from`` (a ConfigError, exit 3, when it is not an address); ``to`` and
    ``subject`` come from the command line (exit 5)."""
    if any(c in subject for c in "\r\n\0"):
        raise InvalidInputError("--mail-subject: must be one line")
    header_from, envelope_from = address(sender, "mail.from", error=ConfigError)
    written: dict[str, str] = {}  # bare address -> as written: one RCPT each, whatever the command line repeats
    for given in to:
        header, bare = address(given, "--mail-to")
        written.setdefault(bare, header)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = header_from
    msg["To"] = ", ".join(written.values())
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    # the sender's domain: make_msgid would otherwise look up this machine's name in the DNS
    msg["Message-ID"] = email.utils.make_msgid(domain=envelope_from.rpartition("@")[2])
    # RFC 3834: a machine sent it, so out-of-office and other auto-replies leave the sender alone
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    for a in attachments:
        maintype, _, subtype = a.content_type.partition("/")
        # base64: the bytes arrive as they were (a CSV's own line ends included)
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename,
                           params={"charset": "utf-8"} if maintype == "text" else {})
    return Outgoing(envelope_from, tuple(written), msg.as_bytes())
