"""The demo says "ok" only when what was published and what was stored reconcile, and names the difference."""

from __future__ import annotations

from typing import Any

from app.demo_reconcile import differences


def snap(**over: Any) -> dict[str, Any]:
    """A run that reconciles: 1,000 messages published and received; 990 rows stored and 10 repeats skipped
    (a reconnect's replay); the database holds what the sink inserted."""
    doc = {
        "published_data": 1000,
        "sink_received": 1000,
        "stored": 990,
        "duplicates": 10,
        "sink_stored": {"trades": 600, "quotes": 390},
        "rows_in_database": {"trades": 600, "quotes": 390},
        "backfill": {},
    }
    return {**doc, **over}


def test_a_run_that_reconciles_has_no_differences() -> None:
    assert differences(snap()) == []


def test_more_rows_stored_than_events_published_is_named() -> None:
    # the run: 8,958 rows stored against 8,483 published, and the old demo said ok
    diff = differences(snap(published_data=8483, sink_received=8483, stored=8958, duplicates=0,
                            sink_stored={"trades": 8958}, rows_in_database={"trades": 8958}))  # fmt: skip
    assert diff == ["published 8,483 events, the sink stored 8,958 and skipped 0 repeats (-475 unaccounted)"]


def test_messages_the_sink_never_received_are_named() -> None:
    diff = differences(snap(sink_received=950, stored=940))
    assert diff == ["published 1,000 messages on the topics the sink stores, the sink received 950 (50 missing)",
                    "published 1,000 events, the sink stored 940 and skipped 10 repeats (+50 unaccounted)"]  # fmt: skip


def test_a_table_holding_other_rows_than_the_sink_inserted_is_named() -> None:
    assert differences(snap(rows_in_database={"trades": 600, "quotes": 389})) == [
        "the sink inserted 390 rows into quotes, the table holds 389"
    ]


def test_a_backfill_counts_its_ticks_not_its_messages() -> None:
    # 13 QuoteBatch messages carried 12,000 ticks: 1,013 messages received, 12,990 rows + 10 repeats
    doc = snap(published_data=1013, sink_received=1013, stored=12_990,
               sink_stored={"trades": 600, "quotes": 12_390}, rows_in_database={"trades": 600, "quotes": 12_390},
               backfill={"messages": 13, "ticks_published": 12_000})  # fmt: skip
    assert differences(doc) == []
