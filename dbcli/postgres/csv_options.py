"""The CSV dialect of a table import or export: COPY's options, checked once, in both directions.

``--delimiter``, ``--quote``, ``--escape``, ``--null``, ``--no-header`` and ``--encoding`` mean
what COPY's ``DELIMITER``, ``QUOTE``, ``ESCAPE``, ``NULL``, ``HEADER`` and ``ENCODING`` mean in
CSV mode; TSV is CSV with a tab for delimiter (quoted where a value needs it, as spreadsheets and
Python's ``excel-tab`` write it). A combination COPY would refuse, or that cannot be read back
unambiguously, is a usage error before anything runs.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from dbcli.errors import UsageError

# Python codec name -> PostgreSQL encoding name, for COPY ... (ENCODING ...) of an export
_PG_ENCODINGS = {
    "utf-8": "UTF8", "latin-1": "LATIN1", "iso8859-1": "LATIN1", "iso8859-2": "LATIN2", "iso8859-3": "LATIN3",
    "iso8859-4": "LATIN4", "iso8859-9": "LATIN5", "iso8859-10": "LATIN6", "iso8859-13": "LATIN7",
    "iso8859-14": "LATIN8", "iso8859-15": "LATIN9", "iso8859-16": "LATIN10", "iso8859-5": "ISO_8859_5",
    "iso8859-6": "ISO_8859_6", "iso8859-7": "ISO_8859_7", "iso8859-8": "ISO_8859_8", "cp1250": "WIN1250",
    "cp1251": "WIN1251", "cp1252": "WIN1252", "cp1253": "WIN1253", "cp1254": "WIN1254", "cp1255": "WIN1255",
    "cp1256": "WIN1256", "cp1257": "WIN1257", "cp1258": "WIN1258", "cp866": "WIN866", "cp874": "WIN874",
    "koi8-r": "KOI8R", "koi8-u": "KOI8U", "euc_jp": "EUC_JP", "euc_kr": "EUC_KR", "gb18030": "GB18030",
    "gbk": "GBK", "big5": "BIG5", "shift_jis": "SJIS", "ascii": "SQL_ASCII",
}


@dataclass(frozen=True)
class CsvOptions:
    """A CSV dialect; the defaults are dbcli's (and COPY's) CSV."""

    delimiter: str = ","
    quote: str = '"'
    escape: str | None = None  # None: the quote character, doubled inside a quoted value
    null: str = ""
    header: bool = True
    encoding: str = "utf-8"  # a Python codec name (normalised)

    @property
    def default(self) -> bool:
        """The plain dialect the import's fast checks are written for."""
        return self == CsvOptions(header=self.header, encoding=self.encoding)

    def copy_options(self, *, encoding: bool = False) -> sql.Composable:
        """``FORMAT csv, ...``: the options of the COPY statement; ``encoding``: with ENCODING (an
        export; an import decodes the file itself, so its errors name their line)."""
        parts: list[sql.Composable] = [sql.SQL("FORMAT csv")]
        if self.header:
            parts.append(sql.SQL("HEADER"))
        if self.delimiter != ",":
            parts.append(sql.SQL("DELIMITER {}").format(sql.Literal(self.delimiter)))
        if self.quote != '"':
            parts.append(sql.SQL("QUOTE {}").format(sql.Literal(self.quote)))
        if self.escape is not None and self.escape != self.quote:
            parts.append(sql.SQL("ESCAPE {}").format(sql.Literal(self.escape)))
        if self.null:
            parts.append(sql.SQL("NULL {}").format(sql.Literal(self.null)))
        if encoding and self.encoding != "utf-8":
            parts.append(sql.SQL("ENCODING {}").format(sql.Literal(_PG_ENCODINGS[self.encoding])))
        return sql.SQL(", ").join(parts)

    def reader_kwargs(self) -> dict[str, Any]:
        """The same dialect for Python's csv module."""
        if self.escape is None or self.escape == self.quote:
            return {"delimiter": self.delimiter, "quotechar": self.quote, "doublequote": True}
        return {"delimiter": self.delimiter, "quotechar": self.quote, "escapechar": self.escape,
                "doublequote": False}


def one_char(option: str, value: str | None) -> str | None:
    """A one-character option value; ``\\t`` as typed in a shell means a tab."""
    if value is None:
        return None
    value = {"\\t": "\t", "tab": "\t"}.get(value, value)
    if len(value) != 1:
        raise UsageError(f"{option} must be one character, not {value!r}")
    return value


def csv_options(*, fmt: str, delimiter: str | None = None, quote: str | None = None, escape: str | None = None,
                null: str | None = None, header: bool = True, encoding: str | None = None) -> CsvOptions:
    """The dialect of the command line's options, or a usage error naming the one that makes no sense.

    ``fmt`` is the resolved format: csv and tsv take every option; json and jsonl take none.
    """
    given = {"--delimiter": delimiter, "--quote": quote, "--escape": escape, "--null": null,
             "--encoding": encoding}
    if fmt not in ("csv", "tsv"):
        named = [name for name, value in given.items() if value is not None] + ([] if header else ["--no-header"])
        if named:
            why = " (JSON is UTF-8)" if named == ["--encoding"] else ""
            raise UsageError(f"{named[0]} applies to csv and tsv only, not {fmt}{why}")
        return CsvOptions()
    d, q, e = one_char("--delimiter", delimiter), one_char("--quote", quote), one_char("--escape", escape)
    if fmt == "tsv" and d not in (None, "\t"):
        raise UsageError("--delimiter cannot change tsv's tab (use --format csv --delimiter C)")
    options = CsvOptions(delimiter=d or ("\t" if fmt == "tsv" else ","), quote=q or '"', escape=e,
                         null=null or "", header=header, encoding=_codec(encoding))
    _check(options)
    return options


def _codec(encoding: str | None) -> str:
    if encoding is None:
        return "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f"--encoding {encoding!r}: unknown encoding") from None
    if name not in _PG_ENCODINGS:
        raise UsageError(f"--encoding {encoding!r}: PostgreSQL has no such client encoding")
    return name


def _check(o: CsvOptions) -> None:
    """What COPY refuses in CSV mode, said before anything runs (its rules, in its order)."""
    specials = {"delimiter": o.delimiter, "quote": o.quote}
    for name, ch in specials.items():
        if ch in "\r\n":
            raise UsageError(f"--{name} cannot be a line break")
    if o.delimiter == o.quote:
        raise UsageError("--delimiter and --quote must differ")
    if o.escape is not None and o.escape in "\r\n":
        raise UsageError("--escape cannot be a line break")
    if o.delimiter in o.null or o.quote in o.null:
        raise UsageError("--null cannot contain the delimiter or the quote character")
    if "\r" in o.null or "\n" in o.null:
        raise UsageError("--null cannot contain a line break")
