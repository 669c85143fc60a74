"""The sink's TimescaleDB refresher without a database: which rows count, the window, and the coalescing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sinks.postgres.aggregates import AggregateRefresher, _window, is_historical

HIST = "persistent://market-data/historical/dukascopy.EUR-USD.quote"
LIVE = "persistent://market-data/fx/oanda.EUR-USD.quote"
NS = 1_549_238_400 * 10**9  # 2019-02-04T00:00:00Z


@dataclass
class _Msg:
    topic: str

    def topic_name(self) -> str:
        return self.topic


@dataclass
class _Item:
    msg: _Msg
    table: str
    ts_event: int
    rows: list[tuple[Any, ...]] | None = None


class _Recording(AggregateRefresher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("postgresql://unused", *args, **kwargs)
        self.calls: list[tuple[int, int]] = []

    def _refresh(self, lo: int, hi: int) -> bool:  # type: ignore[override]
        self.calls.append((lo, hi))
        return True


def test_is_historical_and_window() -> None:
    assert is_historical(HIST) and not is_historical(LIVE) and not is_historical("nonsense")
    start, end = _window(NS + 1_999, NS + 5_000_000_999)  # type: ignore[misc]
    assert start == datetime(2019, 2, 4, 0, 0, 0, 1, tzinfo=UTC)  # ns floored to µs, as the ``time`` column
    assert end == datetime(2019, 2, 4, 0, 0, 5, 1, tzinfo=UTC)  # one µs past the last row: exclusive end


def test_only_new_historical_trades_and_quotes_count() -> None:
    r = _Recording([HIST, LIVE])
    r.committed([_Item(_Msg(LIVE), "quotes", NS), _Item(_Msg(HIST), "book_top", NS)], {"quotes": 1, "book_top": 1})
    assert r.pending() is None
    r.committed([_Item(_Msg(HIST), "quotes", NS)], {"quotes": 0})  # all duplicates: nothing changed
    assert r.pending() is None
    rows = [("v", "s", None, NS + 7_000), ("v", "s", None, NS + 3_000)]  # a message carrying many rows
    r.committed([_Item(_Msg(HIST), "quotes", NS + 7_000, rows), _Item(_Msg(LIVE), "quotes", 0)], {"quotes": 3})
    assert r.pending() == _window(NS + 3_000, NS + 7_000)
    assert AggregateRefresher("postgresql://unused", [LIVE])._none


def test_refreshes_once_when_idle_not_per_batch() -> None:
    r = _Recording([HIST], idle_s=0.3, busy_every_s=60)
    r.start()
    try:
        for i in range(10):
            r.committed([_Item(_Msg(HIST), "trades", NS + i * 10**9)], {"trades": 1})
            time.sleep(0.02)
        assert r.calls == []  # still busy
        deadline = time.monotonic() + 5
        while not r.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.4)
        assert r.calls == [(NS, NS + 9 * 10**9)]  # one refresh over the whole range
    finally:
        r.stop()


def test_refreshes_every_n_seconds_while_busy_and_flushes_on_stop() -> None:
    r = _Recording([HIST], idle_s=60, busy_every_s=0.25)
    r.start()
    t_end = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < t_end:
        r.committed([_Item(_Msg(HIST), "quotes", NS + i)], {"quotes": 1})
        i += 1
        time.sleep(0.01)
    r.committed([_Item(_Msg(HIST), "quotes", NS + 10**12)], {"quotes": 1})
    r.stop()
    assert 2 <= len(r.calls) <= 6 < i  # coalesced: a few refreshes for many batches
    assert r.calls[-1][1] == NS + 10**12  # what was pending at stop was refreshed
    lo = min(c[0] for c in r.calls)
    assert lo == NS
