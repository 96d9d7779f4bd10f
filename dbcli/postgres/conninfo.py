"""libpq connection strings parsed without libpq, for the tools that take their connection from PG* variables.

``backup create`` starts pg_dump before psycopg is imported (that import alone costs ~150 ms of
a cron job's run), so it cannot ask libpq (``PQconninfoParse``) to split a ``postgres.dsn``. This
follows libpq's own grammar (``conninfo_parse`` and ``conninfo_uri_parse_options`` in
fe-connect.c): keyword/value strings and ``postgresql://`` URIs. Anything it does not accept raises
ValueError, and the caller falls back to libpq itself, so a string libpq would take is never
refused here, and libpq's wording reaches the user for one it would not.
"""

from __future__ import annotations

import re

_URI_PREFIXES = ("postgresql://", "postgres://")
_SPACE = " \t\n\r\f\v"


def parse(dsn: str) -> dict[str, str]:
    """The keyword/value pairs of a conninfo string or URI, as ``psycopg.conninfo.conninfo_to_dict`` gives them."""
    if "\0" in dsn:
        raise ValueError("NUL in a connection string")  # libpq, reading C strings, stops at it
    if dsn.startswith(_URI_PREFIXES):
        return _parse_uri(dsn)
    return _parse_keywords(dsn)


def _parse_keywords(dsn: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i] in _SPACE:
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and dsn[i] != "=" and dsn[i] not in _SPACE:
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i] in _SPACE:
            i += 1
        if i >= n or dsn[i] != "=":
            raise ValueError(f'missing "=" after "{key}" in connection info string')
        i += 1
        while i < n and dsn[i] in _SPACE:
            i += 1
        value: list[str] = []
        if i < n and dsn[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string in connection info string")
                ch = dsn[i]
                if ch == "\\" and i + 1 < n:
                    value.append(dsn[i + 1])
                    i += 2
                elif ch == "'":
                    i += 1
                    break
                else:
                    value.append(ch)
                    i += 1
        else:
            while i < n and dsn[i] not in _SPACE:
                if dsn[i] == "\\":
                    i += 1
                    if i < n:
                        value.append(dsn[i])
                        i += 1
                else:
                    value.append(dsn[i])
                    i += 1
        out[_known(key)] = "".join(value)


def _parse_uri(dsn: str) -> dict[str, str]:
    out: dict[str, str] = {}
    rest = dsn.split("://", 1)[1]
    if any(ch in _SPACE for ch in rest):
        # libpq 17+ trims some of it and refuses the rest; a URI has no business holding any (%20)
        raise ValueError("whitespace in a connection URI")
    # user[:password]@ ends at the first "@" before any "/"
    at, slash = rest.find("@"), rest.find("/")
    if at >= 0 and (slash < 0 or at < slash):
        userinfo, rest = rest[:at], rest[at + 1:]
        user, colon, password = userinfo.partition(":")
        if user:
            out["user"] = _decode(user)
        if colon and password:
            out["password"] = _decode(password)
    hosts: list[str] = []
    ports: list[str] = []
    i, n = 0, len(rest)
    while True:
        if i < n and rest[i] == "[":
            end = rest.find("]", i)
            if end < 0:
                raise ValueError("end of string reached when looking for matching \"]\" in IPv6 host address")
            if end == i + 1:
                raise ValueError("IPv6 host address may not be empty in URI")
            host, i = rest[i + 1:end], end + 1
            if i < n and rest[i] not in ":/?,":
                raise ValueError("unexpected character in URI after an IPv6 host address")
        else:
            start = i
            while i < n and rest[i] not in ":/?,":
                i += 1
            host = rest[start:i]
        hosts.append(host)
        port = ""
        if i < n and rest[i] == ":":
            start = i = i + 1
            while i < n and rest[i] not in "/?,":
                i += 1
            port = rest[start:i]
        ports.append(port)
        if i < n and rest[i] == ",":
            i += 1
            continue
        break
    # as libpq: "h1,h2" without ports gives port ","
    for key, parts in (("host", hosts), ("port", ports)):
        if ",".join(parts):
            out[key] = _decode(",".join(parts))
    rest = rest[i:]
    if rest.startswith("/"):
        dbname, _, query = rest[1:].partition("?")
        if dbname:
            out["dbname"] = _decode(dbname)
    elif rest.startswith("?"):
        query = rest[1:]
    else:
        query = ""
    if query:
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            if not eq:
                raise ValueError(f'missing key/value separator "=" in URI query parameter: "{pair}"')
            if "=" in value:
                raise ValueError(f'extra key/value separator "=" in URI query parameter: "{pair}"')
            key, value = _decode(key), _decode(value)
            if key == "ssl" and value == "true":
                key, value = "sslmode", "require"
            out[_known(key)] = value
    return out


def _decode(text: str) -> str:
    if "%" not in text:
        return text
    data = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i] == 0x25:  # "%"
            token = raw[i + 1:i + 3]
            if len(token) < 2 or not re.fullmatch(rb"[0-9A-Fa-f]{2}", token):
                raise ValueError(f'invalid percent-encoded token: "{text}"')
            if token == b"00":
                raise ValueError(f'forbidden value %00 in percent-encoded value: "{text}"')
            data.append(int(token, 16))
            i += 3
        else:
            data.append(raw[i])
            i += 1
    return data.decode()


def _known(key: str) -> str:
    # libpq refuses keywords it does not know; so do we, and the caller asks libpq for its message
    if key not in KEYWORDS:
        raise ValueError(f'invalid connection option "{key}"')
    return key


# the connection keywords of libpq 18 (PQconndefaults), in its order
KEYWORDS = frozenset((
    "service", "user", "password", "passfile", "channel_binding", "connect_timeout", "dbname", "host",
    "hostaddr", "port", "client_encoding", "options", "application_name", "fallback_application_name",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "sslmode", "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslcertmode", "sslpassword",
    "sslkeylogfile", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "require_auth",
    "min_protocol_version", "max_protocol_version", "ssl_min_protocol_version", "ssl_max_protocol_version",
    "gssencmode", "krbsrvname", "gsslib", "gssdelegation", "scram_client_key", "scram_server_key",
    "replication", "target_session_attrs", "load_balance_hosts", "oauth_issuer", "oauth_client_id",
    "oauth_client_secret", "oauth_scope",
))
