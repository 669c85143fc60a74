"""CLI tables (rich): aligned columns, numbers right-justified, cells printed literally, never wrapped on a pipe."""

from __future__ import annotations

import pytest

from pulse.clitools import print_table


def test_columns_align_and_numbers_are_right_justified(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(("instrument", "px", "state"), [("kraken:BTC/USD", 1, "enabled"), ("oanda:EUR/USD", 5, None)],
                right=("px",))  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    header, rule, first, second = lines
    assert header.split() == ["instrument", "px", "state"] and set(rule.strip()) == {"─"}
    # every column starts where its header starts; the number column ends where its header ends
    assert first.index("enabled") == header.index("state")
    assert first.index("1") + 1 == second.index("5") + 1 == header.index("px") + 2
    assert second.rstrip().endswith("5")  # None prints as an empty cell


def test_cells_are_literal_and_long_rows_are_not_wrapped_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    name = "[bold]not markup[/bold]"
    params = " ".join(f"k{i}=v{i}" for i in range(60))  # far wider than 80 columns
    print_table(("name", "parameters"), [(name, params)])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and name in out[2] and params in out[2]
