"""`report run --format html`: one self-contained page, values escaped, and the page as a real browser
(headless Chromium) renders it: a screenshot that is not blank and shows the chart, the table's rows
in the DOM, and markup in the data shown as text, never run.

The screenshots go to the test's tmp dir, and to $DBCLI_TEST_ARTIFACTS when it is set. In CI a
missing Chromium fails these tests (.ci/run installs it); elsewhere they skip.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shutil
import struct
import subprocess
import zlib
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbcli.reports import html
from dbcli.reports.model import Report
from dbcli.reports.running import ReportResult
from tests.helpers import KNOWN_SQL, invoke, write_config

# read at import: the autouse isolated_env fixture clears DBCLI_* variables before each test
ARTIFACTS = os.environ.get("DBCLI_TEST_ARTIFACTS")
MARCH = ["report", "run", "daily-revenue", "-P", "from=2024-03-01", "-P", "to=2024-03-31"]
BAR_RGB = (0x2F, 0x6F, 0xB5)  # html.BAR

HOSTILE = """\
name: hostile
description: 'values that look like markup <img src=x onerror="document.body.dataset.pwned=3">'
target: postgres
params:
  - {name: note, type: str, default: "<b>bold?</b>"}
sources: [users]
sql: |
  SELECT '<script>document.body.setAttribute(''data-pwned'', ''1'')</script>' AS label, 3 AS n
  UNION ALL
  SELECT '<img src=x onerror="document.body.setAttribute(''data-pwned'', ''2'')">', 5
  UNION ALL
  SELECT %(note)s, NULL
"""


def report(name: str = "r", description: str = "") -> Report:
    return Report(name=name, description=description, target="postgres", params=(), sources=("t",),
                  path=Path(f"{name}.yaml"), builtin=False)


# ---- the page, without a browser -----------------------------------------------------------------

def test_values_are_escaped_and_nothing_is_loaded() -> None:
    rows = [{"label": "<script>alert(1)</script>", "n": Decimal("2.50"), "doc": {"a": "<i>"}},
            {"label": 'a "quoted" & <b>bold</b>', "n": None, "doc": None}]
    result = ReportResult("r", ["label", "n", "doc"], rows, computed_at=1_700_000_000)
    page = html.page(report(description="<em>desc</em>"), {"who": "<u>x</u>", "day": dt.date(2024, 3, 1)}, result,
                     chart="n")
    assert "<script" not in page and "<img" not in page and "<em>" not in page and "<u>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;em&gt;desc&lt;/em&gt;" in page and "&lt;u&gt;x&lt;/u&gt;" in page
    assert "{&quot;a&quot;:&quot;&lt;i&gt;&quot;}" in page  # nested values as JSON, escaped too
    # self-contained: no remote or local asset of any kind (the SVG namespace is a name, not a fetch)
    for asset in ("src=", "href=", "url(", "@import", "<link", "<iframe", "<object"):
        assert asset not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]
    assert "2023-11-14 22:13:20 UTC" in page and "2024-03-01" in page


def test_the_chart_is_svg_bars_in_proportion() -> None:
    rows = [{"k": "a", "v": 10}, {"k": "b", "v": 5}, {"k": "c", "v": None}, {"k": "d", "v": Decimal("-2.5")}]
    svg = html.chart_svg(rows, ["k", "v"], "v")
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert len(widths) == 3 and [round(widths[0] / w, 2) for w in widths] == [1, 2, 4]
    # a null draws no bar
    assert svg.count(html.NEGATIVE) == 1
    assert "<title>v by k</title>" in svg
    many = html.chart_svg([{"k": str(i), "v": i} for i in range(60)], ["k", "v"], "v")
    assert many.count("<rect") == 49 and "(10 more rows not charted)" in many  # 0 draws no bar


def test_light_only_a_limit_and_no_empty_chart() -> None:
    rows = [{"k": f"<{i}>", "v": i} for i in range(5)]
    page = html.page(report(), {}, ReportResult("r", ["k", "v"], rows, computed_at=1_700_000_000), limit=2,
                     footnote="All 5 rows are in <r.csv>.")
    # dark-mode mail readers inverted the text but not the bars and stripes
    assert '<meta name="color-scheme" content="light">' in page
    assert page.count("<tr><td") == 2 and "&lt;1&gt;" in page and "&lt;2&gt;" not in page
    assert "(the first 2 of 5 rows)" in page and "All 5 rows are in &lt;r.csv&gt;." in page
    assert "(the first" not in html.page(report(), {}, ReportResult("r", ["k", "v"], rows), limit=5)
    # review: no rows drew an empty chart frame above "(no rows)"
    empty = html.page(report(), {}, ReportResult("r", ["k", "v"], []), chart="v")
    assert "<svg" not in empty and "(no rows)" in empty


# ---- the command ---------------------------------------------------------------------------------

@pytest.fixture
def known(schema_config_file: Path, pg_server: Any, schema_db: str) -> Path:
    import psycopg

    with psycopg.connect(pg_server.conninfo(schema_db)) as conn:
        conn.execute(KNOWN_SQL)
    return schema_config_file


def test_html_to_a_file_atomically_and_to_stdout(tmp_path: Path, known: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke([*MARCH, "--chart", "revenue", "-o", "report.html"])  # the format from the extension
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "wrote 31 rows to report.html\n")
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and page.count("<tr>") == 31 + 1 + 4
    # a bad --chart column: exit 5, and the previous file is left as it was
    r = invoke([*MARCH, "--chart", "nope", "-o", "report.html"])
    assert r.exit_code == 5
    assert (tmp_path / "report.html").read_text() == page
    out = invoke([*MARCH, "--format", "html"])
    assert out.exit_code == 0 and out.stdout.startswith("<!DOCTYPE html>") and "<svg" not in out.stdout
    assert out.stderr == ""  # no terminal chart, no message: the page is the output
    assert invoke([*MARCH, "-f", "html", "-q"]).stdout == ""
    monkeypatch.setenv("DBCLI_FORMAT", "html")
    assert invoke(MARCH).stdout.startswith("<!DOCTYPE html>")  # $DBCLI_FORMAT chooses it for stdout


# ---- in a real browser ---------------------------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def browse(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on the file, with a profile of its own (parallel runs share nothing)."""
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={page.parent / 'chromium-profile'}", *args, page.as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, RGB pixels) of an 8-bit, non-interlaced RGB or RGBA PNG: what Chromium writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        kind_ = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # undo the row's filter (PNG spec, section 9)
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind_ == 1:
                line[i] = (line[i] + a) & 255
            elif kind_ == 2:
                line[i] = (line[i] + b) & 255
            elif kind_ == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind_ == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels.extend(tuple(line[x:x + 3]) for x in range(0, stride, bpp))
        prev = line
    return width, height, pixels


class TableRows(HTMLParser):
    """The text of each ``<td>`` row of the page's data table (the one with a ``<thead>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.headed = self.in_body = self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("table", "thead"):
            self.headed = tag == "thead"  # the browser gives the facts table a <tbody> too, but no <thead>
        elif tag == "tbody" and self.headed:
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
        elif tag == "td" and self.in_body:
            self.in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.in_body = False
        elif tag == "td":
            self.in_cell = False

    def handle_data(self, data: str) -> None:
        if self.in_cell:
            self.rows[-1][-1] += data


def data_rows(dom: str) -> list[list[str]]:
    parser = TableRows()
    parser.feed(dom)
    return parser.rows


def test_a_charted_report_renders_in_chromium(tmp_path: Path, known: Path) -> None:
    r = invoke([*MARCH, "--chart", "revenue", "-o", "report.html"])
    assert r.exit_code == 0, r.stderr
    page = tmp_path / "report.html"
    shot = tmp_path / "daily-revenue.png"
    browse(page, f"--screenshot={shot}", "--window-size=1000,1400")
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(ARTIFACTS) / shot.name)
    data = shot.read_bytes()
    assert len(data) > 20_000
    width, height, pixels = png_pixels(data)
    assert (width, height) == (1000, 1400)
    inked = sum(1 for p in pixels if p != (255, 255, 255))
    assert inked > len(pixels) // 50  # text, table lines and bars: far from a blank page
    bar = sum(1 for p in pixels if all(abs(v - w) <= 12 for v, w in zip(p, BAR_RGB, strict=True)))
    assert bar > 5_000  # the SVG bars were drawn
    # the DOM as the browser built it: every row of `report run -f csv`, cell for cell
    dom = browse(page, "--dump-dom").stdout
    expected = list(csv.reader(io.StringIO(invoke([*MARCH, "-f", "csv"]).stdout)))
    assert data_rows(dom) == expected[1:]
    assert len(expected) == 32


def test_markup_in_the_data_is_shown_as_text_in_chromium(tmp_path: Path, known: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "hostile.yaml").write_text(HOSTILE)
    write_config(known, {**yaml.safe_load(known.read_text()), "reports": {"dir": str(tmp_path / "reports")}})
    r = invoke(["report", "run", "hostile", "--chart", "n", "-f", "html", "-o", "hostile.html"])
    assert r.exit_code == 0, r.stderr
    dom = browse(tmp_path / "hostile.html", "--dump-dom").stdout
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]  # no script ran, no handler fired
    assert "<script" not in dom and "<img" not in dom and "<b>" not in dom
    assert [row[0] for row in data_rows(dom)] == [
        "<script>document.body.setAttribute('data-pwned', '1')</script>",
        "<img src=x onerror=\"document.body.setAttribute('data-pwned', '2')\">", "<b>bold?</b>"]


def test_long_values_wrap_inside_the_window_in_chromium(tmp_path: Path) -> None:
    # review: a 400-character value pushed the table (and the numbers) past the window's edge
    rows = [{"id": i, "blob": "abcdefghij" * 40, "doc": {"k": "x" * 200}, "amount": Decimal("12345.67")}
            for i in range(3)]
    page = html.page(report(), {}, ReportResult("r", ["id", "blob", "doc", "amount"], rows))
    # the test's own probe, appended after the page: how wide the laid-out document is
    probe = ("<script>document.title = document.documentElement.scrollWidth + ' ' + window.innerWidth"
             "</script>")
    (tmp_path / "wide.html").write_text(page + probe)
    dom = browse(tmp_path / "wide.html", "--window-size=800,600", "--dump-dom").stdout
    found = re.search(r"<title>(\d+) (\d+)</title>", dom)
    assert found, dom[:500]
    assert int(found[1]) <= int(found[2])


def test_wide_characters_widen_the_label_column() -> None:
    # review: labels were sized at 7 px a character, and CJK ones ran past the SVG's left edge
    svg = html.chart_svg([{"k": "日本語の売上", "v": 3}, {"k": "abc", "v": 1}], ["k", "v"], "v")
    anchor = float(re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="12" text-anchor="end"', svg)[0])
    assert anchor >= 6 * html.WIDE_CHAR_WIDTH
    assert html.text_width("ab日") == 2 * html.CHAR_WIDTH + html.WIDE_CHAR_WIDTH
