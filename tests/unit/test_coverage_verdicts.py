"""`pulse coverage`'s verdict for one hour, with repairs: when an hour counts as repaired, and when not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.coverage import Hour, strip

H = datetime(2026, 12, 5, 7, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return H + timedelta(minutes=minutes)


def repair(start: int, end: int, added: int, source: str = "kraken REST") -> dict:
    return {"source": source, "from": at(start), "to": at(end), "fetched": added, "added": added, "at": at(end)}


def gapped(*repairs: dict, marker: int = 20) -> Hour:
    return Hour(H, trades={"kraken": 10}, markers={"gap": 1}, last_marker=at(marker), repairs=list(repairs))


def test_a_gap_is_repaired_by_a_repair_from_the_hours_start_past_its_last_marker() -> None:
    assert gapped(repair(0, 25, 5)).status == "repaired"
    assert gapped(repair(0, 25, 0)).status == "repaired"  # nothing was lost: checked, complete
    assert gapped(repair(0, 25, 5)).repaired_by == ["kraken REST"]


def test_a_gap_after_the_repair_or_a_repair_from_mid_hour_leaves_it_a_gap() -> None:
    assert gapped(repair(0, 15, 5)).status == "gap"  # a new marker at :20 came after the repair ended at :15
    assert gapped(repair(10, 60, 5)).status == "gap"  # the hole before :10 was not asked about
    assert gapped().status == "gap"


def test_without_markers_only_added_rows_make_an_hour_repaired() -> None:
    ok = Hour(H, trades={"kraken": 10}, repairs=[repair(0, 60, 0)])
    assert ok.status == "ok"  # checked, nothing was missing
    assert Hour(H, trades={"kraken": 10}, repairs=[repair(0, 60, 3)]).status == "repaired"
    assert Hour(H, repairs=[repair(0, 60, 0)]).status == "missing"  # the source had nothing either
    assert Hour(H, closed=True).status == "closed"


def test_the_heat_strip_marks_repaired_hours() -> None:
    hours = [gapped(repair(0, 25, 5)), gapped(), Hour(H + timedelta(hours=2), trades={"kraken": 1})]
    assert strip(hours) == "▓▒█"
