"""The console's HTTP API against a real `pulse web`, broker and database; every response is validated against
the OpenAPI document the gateway serves (openapi-core)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.schema import ensure_schema
from tests.web_gateway import Checked, gateway

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def api(runtime_settings: Settings) -> Iterator[Checked]:
    with gateway(runtime_settings) as gw:
        yield Checked(gw)


@pytest.fixture(scope="module")
def history(endpoints: Endpoints) -> dict[str, Any]:
    """Three weeks of hourly trades plus two dense minutes (one trade a second) of one instrument, stored as the
    sink stores them; returns the symbol and the rows."""
    ensure_schema(endpoints.database_url)
    symbol = f"H{datetime.now(UTC).strftime('%H%M%S')}/USD"
    rows = []
    for h in range(21 * 24):
        rows.append((T0 + timedelta(hours=h, minutes=30), Decimal(100 + (h * 37) % 50) + Decimal("0.125")))
    dense = T0 + timedelta(days=2, hours=5)
    for s in range(120):
        rows.append((dense + timedelta(seconds=s), Decimal(200) + Decimal(s) / 1000))
    rows.sort()
    with psycopg.connect(endpoints.database_url) as conn, conn.cursor() as cur:
        for i, (t, price) in enumerate(rows):
            ns = int(t.timestamp()) * 1_000_000_000
            cur.execute(
                "INSERT INTO trades (venue, symbol, time, ts_event_ns, ts_recv_ns, seq, trade_id, price, size, side)"
                " VALUES ('kraken', %s, %s, %s, %s, %s, %s, %s, %s, 'buy')",
                (symbol, t, ns, ns, i, f"h{i}", price, Decimal("0.5")),
            )
    return {"symbol": symbol, "rows": rows, "dense": dense}


def q(**params: Any) -> str:
    return urllib.parse.urlencode(params)


def ohlc(rows: list[tuple[datetime, Decimal]]) -> tuple[str, str, str, str]:
    prices = [p for _, p in rows]
    return str(prices[0]), str(max(prices)), str(min(prices)), str(prices[-1])


def test_points_pick_the_resolution_from_weeks_down_to_ticks(api: Checked, history: dict[str, Any]) -> None:
    sym, rows = history["symbol"], history["rows"]
    start, end = T0, T0 + timedelta(weeks=3)
    cases = [
        (start, end, 5, "1w"),
        (start, end, 30, "1d"),
        (start, end, 600, "1h"),
        (history["dense"], history["dense"] + timedelta(hours=2), 200, "1m"),
        (history["dense"], history["dense"] + timedelta(seconds=120), 200, "tick"),
    ]
    for a, b, points, expected in cases:
        status, doc = api("GET", "/api/candles?" + q(venue="kraken", symbol=sym, points=points, **{
            "from": a.isoformat(), "to": b.isoformat()}))  # fmt: skip
        assert status == 200, doc
        assert doc["resolution"] == expected, (points, doc["resolution"])
    # weekly candles are the week's trades rolled up exactly
    _, doc = api("GET", "/api/candles?" + q(symbol=sym, points=5, **{"from": start.isoformat(), "to": end.isoformat()}))
    assert len(doc["candles"]) == 3
    for w, c in enumerate(doc["candles"]):
        week = [r for r in rows if start + timedelta(weeks=w) <= r[0] < start + timedelta(weeks=w + 1)]
        assert (c["open"], c["high"], c["low"], c["close"]) == ohlc(week)
        assert c["ticks"] == len(week) and Decimal(c["volume"]) == Decimal("0.5") * len(week)
        assert c["time"] == int((start + timedelta(weeks=w)).timestamp())
    # the narrowest view is the raw ticks, exact
    _, doc = api(
        "GET",
        "/api/candles?"
        + q(
            symbol=sym,
            points=200,
            **{"from": history["dense"].isoformat(), "to": (history["dense"] + timedelta(seconds=120)).isoformat()},
        ),
    )
    assert [t["price"] for t in doc["ticks"]] == [str(Decimal(200) + Decimal(s) / 1000) for s in range(120)]


def test_fixed_interval_candles_match_the_trades(api: Checked, history: dict[str, Any]) -> None:
    sym, rows = history["symbol"], history["rows"]
    status, doc = api("GET", "/api/candles?" + q(symbol=sym, venue="kraken", interval="1d", **{
        "from": T0.isoformat(), "to": (T0 + timedelta(days=3)).isoformat()}))  # fmt: skip
    assert status == 200 and doc["resolution"] == "1d" and len(doc["candles"]) == 3
    for d, c in enumerate(doc["candles"]):
        day = [r for r in rows if T0 + timedelta(days=d) <= r[0] < T0 + timedelta(days=d + 1)]
        assert (c["open"], c["high"], c["low"], c["close"], c["ticks"]) == (*ohlc(day), len(day))


def test_ticks_are_bounded_and_newest(api: Checked, history: dict[str, Any]) -> None:
    d = history["dense"]
    status, doc = api("GET", "/api/ticks?" + q(symbol=history["symbol"], limit=5, **{
        "from": d.isoformat(), "to": (d + timedelta(seconds=120)).isoformat()}))  # fmt: skip
    assert status == 200 and doc["truncated"] is True and doc["source"] == "trades"
    assert [t["price"] for t in doc["ticks"]] == [str(Decimal(200) + Decimal(s) / 1000) for s in range(115, 120)]
    status, doc = api("GET", "/api/ticks?" + q(symbol=history["symbol"], limit=9999))
    assert status == 400 and doc["field"] == "limit" and "between 1 and 5000" in doc["error"]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"symbol": "BTC/USD", "interval": "2h"}, "interval", "unknown interval '2h'"),
        ({"symbol": "BTC/USD", "points": "0"}, "points", "between 1 and 5000"),
        ({"symbol": "BTC/USD"}, "interval", "give interval"),
        ({"symbol": "BTC/USD", "interval": "1m", "points": "10"}, "points", "not both"),
        ({"interval": "1m"}, "symbol", "symbol is required"),
        ({"symbol": "BTC/USD", "interval": "1m", "from": "yesterday"}, "from", "not an ISO 8601 time"),
        ({"symbol": "BTC/USD", "interval": "1m", "from": "2024-01-02", "to": "2024-01-01"}, "to", "after from"),
        ({"symbol": "BTC/USD';--", "interval": "1m"}, "symbol", "symbol"),
    ],
)
def test_bad_candle_requests_are_refused_naming_the_parameter(
    api: Checked, params: dict[str, str], field: str, words: str
) -> None:
    status, doc = api("GET", "/api/candles?" + q(**params))
    assert status == 400, doc
    assert doc["field"] == field and words in doc["error"], doc


def test_instruments_add_is_all_or_nothing_and_the_lifecycle_works(api: Checked, unique: str) -> None:
    tok = api.gw.token
    good, other = f"A{unique[:6].upper()}/USD", f"B{unique[:6].upper()}/EUR"
    status, doc = api("POST", "/api/instruments", {"venue": "kraken", "symbols": [good, "DOGE/XXX"]}, token=tok)
    assert status == 400 and doc["symbol"] == "DOGE/XXX" and "XXX is not a Kraken quote currency" in doc["error"]
    listed = {(i["venue"], i["symbol"]) for i in api("GET", "/api/instruments")[1]["instruments"]}
    assert ("kraken", good) not in listed  # nothing was applied
    status, doc = api("POST", "/api/instruments", {"venue": "kraken", "symbols": [good], "channels": ["trades"]},
                      token=tok)  # fmt: skip
    assert status == 400 and doc["field"] == "channels" and "no channel trades" in doc["error"]
    status, doc = api("POST", "/api/instruments", {"venue": "kraken", "symbols": [good], "colour": "red"}, token=tok)
    assert status == 400 and "colour" in doc["error"]
    status, doc = api("POST", "/api/instruments", {"venue": "kraken", "symbols": [good, other],
                                                   "channels": ["trade"]}, token=tok)  # fmt: skip
    assert status == 201 and [r["instrument"]["symbol"] for r in doc["results"]] == [good, other]
    assert doc["results"][0]["instrument"]["channels"] == ["trade"]
    rows = {i["symbol"]: i for i in api("GET", "/api/instruments")[1]["instruments"] if i["venue"] == "kraken"}
    assert rows[good]["enabled"] and rows[good]["source"] == "registry"
    path = f"/api/instruments/kraken/{good.replace('/', '-')}"
    status, doc = api("POST", path + "/disable", token=tok)
    assert status == 200 and doc["instrument"]["enabled"] is False
    status, doc = api("POST", path + "/enable", token=tok)
    assert status == 200 and doc["instrument"]["enabled"] is True
    status, doc = api("DELETE", path, token=tok)
    assert status == 200 and doc["steps"][0] == {"step": "registry", "result": "removed"}
    status, doc = api("DELETE", path, token=tok)
    assert status == 404 and "not in the registry" in doc["error"]
    status, doc = api("DELETE", "/api/instruments/nasdaq/AAPL", token=tok)
    assert status == 404 and "unknown venue 'nasdaq'" in doc["error"]


def test_status_alerts_orders_and_probes_answer_in_their_documented_shape(api: Checked) -> None:
    status, doc = api("GET", "/api/status")
    assert status == 200 and isinstance(doc["healthy"], bool)
    assert any("broker" in line for line in doc["lines"]) and doc["gateway"]["ready"] is True
    assert api("GET", "/api/alerts?limit=5")[0] == 200
    status, doc = api("GET", "/api/orders")
    assert status == 200 and set(doc) == {"orders", "positions"}
    assert api("GET", "/healthz") == (200, {"ok": True})
    assert api("GET", "/readyz") == (200, {"ready": True, "problems": []})
    assert api("GET", "/api/gateway")[1]["ready"] is True
    status, doc = api.gw.request("GET", "/api/nothing")
    assert status == 404 and doc["error"] == "no such endpoint: GET /api/nothing"
