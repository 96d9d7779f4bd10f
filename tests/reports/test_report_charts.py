"""The terminal bar chart: proportions, labels, nulls, colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from dbcli.errors import InvalidInputError
from dbcli.output import Output
from dbcli.reports import charts

ROWS = [{"id": 1, "name": "alpha", "n": Decimal("10")}, {"id": 2, "name": "beta", "n": 5},
        {"id": 3, "name": "gamma", "n": None}, {"id": 4, "name": "delta", "n": 2.5}]


def test_bars_are_proportional_with_eighth_blocks() -> None:
    drawn, left_out = charts.bars(ROWS, ["id", "name", "n"], "n", width=37)
    assert left_out == 0
    # label (5) + value (4) + 4 spaces leave 24 cells: 10 -> 24, 5 -> 12, 2.5 -> 6
    assert [(b.label, b.value, b.cells) for b in drawn] == [
        ("alpha", "  10", "█" * 24), ("beta ", "   5", "█" * 12), ("gamma", "null", ""), ("delta", " 2.5", "█" * 6)]
    drawn, _ = charts.bars(ROWS, ["id", "name", "n"], "n", width=36)
    assert drawn[1].cells == "█" * 11 + "▌"  # 11.5 cells


def test_fractions_use_partial_blocks() -> None:
    assert charts._bar(3.5) == "███▌"
    assert charts._bar(0.125) == "▏"
    assert charts._bar(0.99) == "█"
    assert charts._bar(0) == ""


def test_label_column_can_be_chosen_and_is_checked() -> None:
    drawn, _ = charts.bars(ROWS, ["id", "name", "n"], "n", "id")
    assert [b.label for b in drawn] == ["1", "2", "3", "4"]
    with pytest.raises(InvalidInputError, match="--chart-label: no column 'x'"):
        charts.bars(ROWS, ["id", "name", "n"], "n", "x")
    with pytest.raises(InvalidInputError, match="--chart column 'name' is not numeric"):
        charts.bars(ROWS, ["id", "name", "n"], "name")
    with pytest.raises(InvalidInputError, match="holds true/false"):
        charts.bars([{"b": True}], ["b"], "b")


def test_many_rows_are_capped() -> None:
    rows = [{"k": str(i), "v": i} for i in range(80)]
    drawn, left_out = charts.bars(rows, ["k", "v"], "v")
    assert len(drawn) == charts.MAX_BARS and left_out == 30
    out = Output(fmt="table", stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)
    charts.render(out, rows, ["k", "v"], "v")
    assert out.stdout.getvalue().splitlines()[-1] == "(30 more rows not charted)"
    one = Output(fmt="table", stdout=io.StringIO(), stderr=io.StringIO(), no_color=True)
    charts.render(one, rows[:charts.MAX_BARS + 1], ["k", "v"], "v")
    assert one.stdout.getvalue().splitlines()[-1] == "(1 more row not charted)"  # issue 15: "1 more rows"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "coloured"), [(False, True), (True, False)])
def test_colour_only_on_a_terminal_without_no_color(no_color: bool, coloured: bool) -> None:
    out = Output(fmt="table", stdout=Tty(), stderr=io.StringIO(), no_color=no_color)
    charts.render(out, ROWS, ["id", "name", "n"], "n")
    text = out.stdout.getvalue()
    assert ("\x1b[" in text) is coloured
    assert "████" in text


def test_no_color_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Output(fmt="table", stdout=Tty(), stderr=io.StringIO())
    charts.render(out, ROWS, ["id", "name", "n"], "n")
    assert "\x1b[" not in out.stdout.getvalue()
