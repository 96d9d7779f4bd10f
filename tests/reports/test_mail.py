"""`report run --mail-to`: against a real SMTP server (aiosmtpd, tests/fix_smtp.py), on the known data set.

Delivered: the HTML page as the body, a plain-text alternative, a CSV attachment equal to
`report run -f csv` after a UTF-8 BOM. Refused: a bad login, a refused recipient (nobody gets the mail), a
server that is down or never answers (within mail.timeout), a missing mail: section (exit 3), a bad address
(exit 5).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.fix_smtp import PASSWORD, SMALL_LIMIT, USER, SmtpServer
from tests.helpers import KNOWN_SQL, invoke, write_config

RUN = ["report", "run", "daily-revenue", "-P", "from=2024-03-01", "-P", "to=2024-03-10"]


@pytest.fixture
def known_dsn(schema_config_file: Path, pg_server: Any, schema_db: str) -> str:
    """A database holding the known data set (tests/helpers.py)."""
    import psycopg

    dsn = pg_server.conninfo(schema_db)
    with psycopg.connect(dsn) as conn:
        conn.execute(KNOWN_SQL)
    return str(dsn)


def configure(tmp_path: Path, dsn: str, mail: dict[str, Any] | None) -> Path:
    data: dict[str, Any] = {"postgres": {"dsn": dsn}}
    if mail is not None:
        data["mail"] = mail
    return write_config(tmp_path / "dbcli.yaml", data)


def test_report_arrives_with_html_body_and_csv_attachment(tmp_path: Path, known_dsn: str,
                                                          smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, smtp_server.config())
    r = invoke([*RUN, "--chart", "revenue", "--mail-to", "ann@example.com", "--mail-to", "bob@example.com",
                "--mail-to", "ann@example.com"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""  # mailed, not printed
    assert r.stderr == "mailed 10 rows of daily-revenue to ann@example.com, bob@example.com\n"
    [got] = smtp_server.to("bob@example.com")
    assert got.recipients == ["ann@example.com", "bob@example.com"]  # one transaction, each address once
    assert got.sender == "reports@example.com"
    msg = got.message()
    assert msg["From"] == "Reports <reports@example.com>"
    assert msg["To"] == "ann@example.com, bob@example.com"
    assert msg["Subject"].startswith("Report daily-revenue, ")
    assert msg["Date"] and msg["Message-ID"].endswith("@example.com>")
    assert msg["Auto-Submitted"] == "auto-generated"  # no out-of-office replies to the sender
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "revenue by day" in page
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Report daily-revenue" in text and "from: 2024-03-01" in text and "2024-03-05" in text
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "daily-revenue.csv"
    assert attachment.get_content_type() == "text/csv"
    csv = invoke([*RUN, "-f", "csv"])
    assert attachment.get_content() == "\ufeff" + csv.stdout  # the same rows, byte for byte, after the BOM
    assert len(csv.stdout.splitlines()) == 11


def test_subject_and_file_with_the_mail(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, smtp_server.config())
    r = invoke([*RUN, "--mail-to", "sub@example.com", "--mail-subject", "Weekly revenue ✓", "-o", "week.html", "-q"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    [got] = smtp_server.to("sub@example.com")
    assert got.message()["Subject"] == "Weekly revenue ✓"
    assert (tmp_path / "week.html").read_text().startswith("<!DOCTYPE html>")


def test_login_with_a_password_from_the_environment(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    configure(tmp_path, known_dsn, smtp_server.config(user=USER, password="${SMTP_PASSWORD}"))
    r = invoke([*RUN, "--mail-to", "auth@example.com"])
    assert r.exit_code == 0, r.stderr
    [got] = smtp_server.to("auth@example.com")
    assert got.login == USER
    shown = invoke(["config", "show", "-f", "json"]).json()["mail"]
    assert shown["password"] == "***" and shown["from"] == "Reports <reports@example.com>"


def test_a_refused_login_exits_4_without_the_password(tmp_path: Path, known_dsn: str,
                                                      smtp_server: SmtpServer) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("wrong-Pa55word\n")
    secret.chmod(0o600)
    configure(tmp_path, known_dsn, smtp_server.config(user=USER, password_file=str(secret)))
    r = invoke([*RUN, "--mail-to", "nologin@example.com"])
    assert r.exit_code == 4
    port = smtp_server.port
    assert r.stderr.startswith(f"Error: mail to nologin@example.com: 127.0.0.1:{port} refused the login of "
                               f"reports: 535 5.7.8 Authentication credentials invalid")
    assert len(r.stderr.splitlines()) == 1
    assert "wrong-Pa55word" not in r.stderr
    assert smtp_server.to("nologin@example.com") == []


def test_a_refused_recipient_fails_the_whole_send(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, smtp_server.config())
    (tmp_path / "old.html").write_text("old")
    r = invoke([*RUN, "--mail-to", "kept@example.com", "--mail-to", "refused-x@example.com"])
    assert r.exit_code == 4
    assert r.stderr == (f"Error: mail to kept@example.com, refused-x@example.com: refused-x@example.com refused "
                        f"by 127.0.0.1:{smtp_server.port}: 550 5.1.1 <refused-x@example.com>: Recipient address "
                        "rejected: User unknown (nobody was sent the mail)\n")
    assert smtp_server.to("kept@example.com") == []  # RSET before DATA: not half-sent


def test_a_server_that_is_down_exits_4(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer,
                                       closed_port: int) -> None:
    configure(tmp_path, known_dsn, {**smtp_server.config(), "port": closed_port})
    r = invoke([*RUN, "--mail-to", "down@example.com"])
    assert r.exit_code == 4
    assert r.stderr == (f"Error: mail to down@example.com: cannot connect to 127.0.0.1:{closed_port}: "
                        "connection refused\n")


def test_a_server_that_never_answers_times_out(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer,
                                               silent_smtp: int) -> None:
    configure(tmp_path, known_dsn, {**smtp_server.config(), "port": silent_smtp, "timeout": 1})
    started = time.monotonic()
    r = invoke([*RUN, "--mail-to", "silent@example.com"])
    took = time.monotonic() - started
    assert r.exit_code == 4
    assert r.stderr == (f"Error: mail to silent@example.com: 127.0.0.1:{silent_smtp} did not answer within 1s "
                        "(mail.timeout)\n")
    assert took < 2.5  # the report itself takes a few ms; the wait is the 1 s limit


def test_missing_mail_settings_exit_3_before_the_report_runs(tmp_path: Path, known_dsn: str,
                                                             smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, None)
    r = invoke([*RUN, "--mail-to", "x@example.com"])
    assert r.exit_code == 3
    assert r.stderr == ("Error: mail is not configured: mail.host is not set (hint: add a mail: section "
                        "(host, from; see docs/configuration.md#mail))\n")
    configure(tmp_path, known_dsn, {"host": "127.0.0.1", "port": smtp_server.port})
    r = invoke([*RUN, "--mail-to", "x@example.com"])
    assert (r.exit_code, r.stderr.split(" (hint")[0]) == (3, "Error: mail.from is not set: mail needs a sender address")
    configure(tmp_path, known_dsn, {**smtp_server.config(), "from": "not an address"})
    r = invoke([*RUN, "--mail-to", "x@example.com"])
    assert (r.exit_code, r.stderr) == (3, "Error: mail.from: not a mail address: 'not an address'\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--mail-to", "nobody"], "Error: --mail-to: not a mail address: 'nobody'\n"),
    (["--mail-to", "a@example.com, b@example.com"],
     "Error: --mail-to: not a mail address: 'a@example.com, b@example.com'\n"),
    (["--mail-to", "a@example.com\nBcc: c@example.com"],
     "Error: --mail-to: not a mail address: 'a@example.com\\nBcc: c@example.com'\n"),
    (["--mail-to", "a@example.com", "--mail-subject", "two\nlines"], "Error: --mail-subject: must be one line\n"),
])
def test_bad_addresses_and_subjects_exit_5(tmp_path: Path, known_dsn: str, smtp_server: SmtpServer,
                                           args: list[str], message: str) -> None:
    configure(tmp_path, known_dsn, smtp_server.config())
    before = len(smtp_server.recorder.received)
    r = invoke([*RUN, *args])
    assert (r.exit_code, r.stderr) == (5, message)
    assert len(smtp_server.recorder.received) == before


@pytest.mark.parametrize(("mail", "message"), [
    ({"ssl": True, "starttls": True}, "mail.ssl and mail.starttls are both true (hint: use one: ssl for port 465, "
                                      "starttls for 587)"),
    ({"password": "x"}, "mail.user is not set, but a mail password is"),
    ({"user": "bob"}, "mail.user is set, but neither mail.password nor mail.password_file (hint: a server that "
                      "needs no login needs no mail.user)"),
    ({"port": 0}, "mail.port: must be an integer from 1 to 65535, got 0"),
    ({"timeout": 0}, "mail.timeout: must be more than 0, got 0"),
    ({"body_rows": -1}, "mail.body_rows: must be at least 0, got -1"),
    ({"csv_bom": "maybe"}, "mail.csv_bom: "),
    ({"form": "a@b.example"}, "unknown key 'mail.form' (hint: did you mean 'from'?)"),
])
def test_mail_settings_are_checked_at_load(tmp_path: Path, mail: dict[str, Any], message: str) -> None:
    write_config(tmp_path / "dbcli.yaml", {"mail": {"host": "smtp.example", **mail}})
    r = invoke(["config", "show"])
    assert r.exit_code == 3 and r.stderr.splitlines()[0].startswith(f"Error: {message}")


def test_starttls_then_login(tmp_path: Path, known_dsn: str, smtp_tls_server: SmtpServer,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    mail = smtp_tls_server.config(user=USER, password=PASSWORD)
    configure(tmp_path, known_dsn, mail)
    r = invoke([*RUN, "--mail-to", "plain@example.com"])  # no STARTTLS: the server offers no AUTH
    assert r.exit_code == 4
    assert r.stderr == (f"Error: mail to plain@example.com: 127.0.0.1:{smtp_tls_server.port} offers no login "
                        "(AUTH); it may want mail.starttls: true\n")
    configure(tmp_path, known_dsn, {**mail, "starttls": True})
    r = invoke([*RUN, "--mail-to", "untrusted@example.com"])  # a self-signed certificate is not trusted
    assert r.exit_code == 4
    assert r.stderr == (f"Error: mail to untrusted@example.com: TLS with 127.0.0.1:{smtp_tls_server.port} failed: "
                        "certificate verify failed: self-signed certificate (hint: SSL_CERT_FILE names other "
                        "trusted certificates)\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_tls_server.cert_file))
    r = invoke([*RUN, "--mail-to", "tls@example.com"])
    assert r.exit_code == 0, r.stderr
    [got] = smtp_tls_server.to("tls@example.com")
    assert got.login == USER
    assert smtp_tls_server.to("plain@example.com") == smtp_tls_server.to("untrusted@example.com") == []


def test_smtps(tmp_path: Path, known_dsn: str, smtps_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(smtps_server.cert_file))
    configure(tmp_path, known_dsn, smtps_server.config(ssl=True, user=USER, password=PASSWORD))
    r = invoke([*RUN, "--mail-to", "smtps@example.com"])
    assert r.exit_code == 0, r.stderr
    [got] = smtps_server.to("smtps@example.com")
    assert got.login == USER


def test_port_defaults_follow_the_connection_kind() -> None:
    from dbcli.config.model import MailConfig
    from dbcli.mail.smtp import port_of

    assert [port_of(MailConfig(**kw)) for kw in ({}, {"starttls": True}, {"ssl": True}, {"port": 2525})] == [
        25, 587, 465, 2525]


def test_the_body_shows_the_first_rows_the_attachment_all(tmp_path: Path, known_dsn: str,
                                                          smtp_server: SmtpServer) -> None:
    # review: 100k rows made an 85 MB mail in 196 s (every row in the HTML and in a rich text table);
    # mail readers clip long bodies anyway (Gmail past ~100 kB of HTML)
    configure(tmp_path, known_dsn, smtp_server.config(body_rows=3))
    r = invoke([*RUN, "--mail-to", "few@example.com"])
    assert r.exit_code == 0, r.stderr
    msg = smtp_server.to("few@example.com")[0].message()
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert page.count("<tr><td") == 3 and "(the first 3 of 10 rows)" in page
    assert "All 10 rows are in the attached daily-revenue.csv." in page
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # plain aligned columns: box-drawing characters scatter in a proportional font
    lines = text.splitlines()  # CRLF as sent
    start = lines.index("day         orders  revenue  running_revenue")
    assert lines[start + 1:start + 7] == ["----------  ------  -------  ---------------",
                                          "2024-03-01       1   920.00           920.00",
                                          "2024-03-02       0     0.00           920.00",
                                          "2024-03-03       0     0.00           920.00",
                                          "(the first 3 of 10 rows)", ""]
    assert not any("\u2500" <= ch <= "\u257f" for ch in text)
    assert lines[-1] == "All 10 rows are in the attached daily-revenue.csv."
    [attachment] = list(msg.iter_attachments())
    assert len(attachment.get_content().splitlines()) == 11  # every row


def test_a_missing_password_file_exits_3_before_the_report_runs(tmp_path: Path, known_dsn: str,
                                                                 smtp_server: SmtpServer) -> None:
    # review: the file was read at the send, after the report ran and -o had written its file
    configure(tmp_path, known_dsn, smtp_server.config(user=USER, password_file=str(tmp_path / "nope")))
    r = invoke([*RUN, "--mail-to", "nofile@example.com", "-o", "week.html"])
    assert r.exit_code == 3
    assert r.stderr.startswith("Error: mail.password_file: cannot read ")
    assert not (tmp_path / "week.html").exists()


def test_a_message_over_the_servers_size_is_refused_before_it_is_sent(
        tmp_path: Path, known_dsn: str, small_smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, small_smtp_server.config())
    r = invoke(["report", "run", "daily-revenue", "-P", "from=2024-01-01", "-P", "to=2024-12-31",
                "--mail-to", "big@example.com"])
    assert r.exit_code == 4
    assert r.stderr.startswith("Error: mail to big@example.com: the message (0.")
    assert r.stderr.endswith(f" MB) is larger than 127.0.0.1:{small_smtp_server.port} accepts "
                             f"({SMALL_LIMIT / 1e6:.1f} MB, its SIZE)\n")
    assert small_smtp_server.to("big@example.com") == []
    r = invoke([*RUN, "--mail-to", "small@example.com"])  # a small one goes through, SIZE= given
    assert r.exit_code == 0, r.stderr
    assert len(small_smtp_server.to("small@example.com")) == 1


def test_recipients_with_names_and_a_subject_without_a_recipient(tmp_path: Path, known_dsn: str,
                                                                  smtp_server: SmtpServer) -> None:
    configure(tmp_path, known_dsn, smtp_server.config())
    r = invoke([*RUN, "--mail-to", "Zoë Ünï <zoe@example.com>", "--mail-to", "zoe@example.com"])
    assert (r.exit_code, r.stderr) == (0, "mailed 10 rows of daily-revenue to zoe@example.com\n")
    [got] = smtp_server.to("zoe@example.com")
    assert got.recipients == ["zoe@example.com"]
    assert got.message()["To"] == "Zoë Ünï <zoe@example.com>"
    assert b"To: =?utf-8?" in got.data  # the name encoded for the header
    # the subject alone used to be ignored and the rows printed
    r = invoke([*RUN, "--mail-subject", "Weekly"])
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", "Error: --mail-subject needs --mail-to\n")


NON_ASCII = """\
name: people
description: names and places beyond ASCII
target: postgres
sources: [users]
sql: |
  SELECT 'Zoë Müller' AS name, 'Łódź' AS city, '€ 12,50' AS price
"""


def test_the_csv_attachment_starts_with_a_bom_so_excel_reads_utf8(tmp_path: Path, known_dsn: str,
                                                                   smtp_server: SmtpServer) -> None:
    # review: Excel opened the attachment in the machine's code page: "ZoÃ« MÃ¼ller"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "people.yaml").write_text(NON_ASCII, encoding="utf-8")
    reports = {"dir": str(tmp_path / "reports")}
    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": known_dsn}, "reports": reports,
                                           "mail": smtp_server.config()})
    r = invoke(["report", "run", "people", "--mail-to", "bom@example.com", "-o", "people.csv"])
    assert r.exit_code == 0, r.stderr
    [attachment] = list(smtp_server.to("bom@example.com")[0].message().iter_attachments())
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    assert data.startswith(b"\xef\xbb\xbfname,city,price\n")
    stdout = invoke(["report", "run", "people", "-f", "csv"]).stdout
    assert stdout == "name,city,price\nZoë Müller,Łódź,\"€ 12,50\"\n"  # stdout: no BOM
    assert data.decode("utf-8-sig") == stdout
    assert (tmp_path / "people.csv").read_bytes() == stdout.encode()  # -o: no BOM either

    write_config(tmp_path / "dbcli.yaml", {"postgres": {"dsn": known_dsn}, "reports": reports,
                                           "mail": smtp_server.config(csv_bom=False)})
    assert invoke(["report", "run", "people", "--mail-to", "nobom@example.com"]).exit_code == 0
    [attachment] = list(smtp_server.to("nobom@example.com")[0].message().iter_attachments())
    assert attachment.get_payload(decode=True) == stdout.encode()
