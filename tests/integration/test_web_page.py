"""The console page in a real headless Chromium (Debian's, driven by Playwright), against a real `pulse web`,
broker and database, with live events published while the page is open."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pulse.bus import Bus, EventPublisher
from pulse.models import Quote, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.schema import ensure_schema
from tests.web_gateway import Gateway, gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PULSE_TEST_ARTIFACTS", REPO / "test-artifacts"))

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module", autouse=True)
def chromium_present() -> None:
    """Skip without Chromium, except in CI (PULSE_REQUIRE_BROWSER=1, set by .ci/run), where that is a failure."""
    if not Path(CHROMIUM).exists():
        message = f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)"
        if os.environ.get("PULSE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


class Feed:
    """Publishes a trade and a quote of each listed instrument every 50 ms from a thread, prices moving."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        bus = Bus(settings.with_overrides(pulsar={"batching_max_messages": 20}), endpoints.pulsar_url)
        self.pub = EventPublisher(bus, "crypto", producer_prefix="test-web-page", owns_bus=True)
        self.symbols: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            for sym in list(self.symbols):
                now = time.time_ns()
                px = Decimal(500) + Decimal(i % 97) / 10
                self.pub.publish(Trade(venue="kraken", symbol=sym, ts_event=now, ts_recv=now, seq=i, price=px,
                                       size=Decimal("0.25"), side="buy", trade_id=f"p{i}"))  # fmt: skip
                self.pub.publish(Quote(venue="kraken", symbol=sym, ts_event=now, ts_recv=now, seq=i,
                                       bid=px - Decimal("0.1"), bid_size=Decimal(1), ask=px + Decimal("0.1"),
                                       ask_size=Decimal(2)))  # fmt: skip
            self.pub.flush()
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pub.close()


@pytest.fixture(scope="module")
def world(runtime_settings: Settings, endpoints: Endpoints) -> Iterator[dict[str, Any]]:
    """A gateway, one charted instrument with a day of stored trades (one every 20 s), and a live feed."""
    sym = f"P{datetime.now(UTC).strftime('%H%M%S')}/USD"
    ensure_schema(endpoints.database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(endpoints.database_url) as conn, conn.cursor() as cur:
        rows = []
        for k in range(26 * 180):
            t = now - timedelta(seconds=20 * k)
            ns = int(t.timestamp()) * 1_000_000_000
            rows.append(("kraken", sym, t, ns, ns, k, f"s{k}", Decimal(480) + Decimal(k % 41), Decimal("0.5"), "sell"))
        with cur.copy("COPY trades (venue, symbol, time, ts_event_ns, ts_recv_ns, seq, trade_id, price, size, side)"
                      " FROM STDIN") as copy:  # fmt: skip
            for r in rows:
                copy.write_row(r)
    feed = Feed(runtime_settings, endpoints)
    with gateway(runtime_settings) as gw:
        status, doc = gw.request("POST", "/api/instruments", {"venue": "kraken", "symbols": [sym]}, token=gw.token)
        assert status == 201, doc
        feed.symbols.append(sym)
        try:
            yield {"gw": gw, "symbol": sym, "feed": feed}
        finally:
            feed.close()


@pytest.fixture
def page(world: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    gw: Gateway = world["gw"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 900})
            pg.errors = []  # type: ignore[attr-defined]
            pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))  # type: ignore[attr-defined]
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
            pg.responses = []  # type: ignore[attr-defined]
            pg.on("response", lambda r: "/api/candles" in r.url and "points=" in r.url
                  and pg.responses.append(r))  # type: ignore[attr-defined]  # fmt: skip
            # a refused request names itself (the console line only says "Failed to load resource: 400")
            pg.on("response", lambda r: r.status >= 400 and pg.errors.append(  # type: ignore[attr-defined]
                  f"{r.status} {r.request.method} {r.url}: {r.text()[:300]}"))  # fmt: skip
            pg.goto(f"{gw.url}/#token={gw.token}")
            yield pg
        finally:
            browser.close()


def _row(page: Any, symbol: str) -> Any:
    return page.locator(f'#watchlist tr[data-key="kraken:{symbol}"]')


def test_the_page_loads_without_errors_and_prices_move(page: Any, world: dict[str, Any]) -> None:
    sym = world["symbol"]
    last = _row(page, sym).locator(".last")
    last.wait_for()
    page.wait_for_function(f"() => /\\d/.test(document.querySelector('#watchlist tr[data-key=\"kraken:{sym}\"] .last')"
                           ".textContent)", timeout=15000)  # fmt: skip
    seen = {last.text_content()}
    deadline = time.monotonic() + 15
    while len(seen) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        seen.add(last.text_content())
    assert len(seen) >= 3, seen  # the last price changes on screen, pushed by the WebSocket
    assert re.fullmatch(r"\d+\.\d", _row(page, sym).locator(".spread").text_content() or "")
    assert page.locator("#conn").text_content() == "live"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1500)  # let the health panel and the chart fill in
    page.screenshot(path=str(ARTIFACTS / "console.png"))
    if os.environ.get("PULSE_UPDATE_DOCS_SCREENSHOT"):
        shutil.copy(ARTIFACTS / "console.png", REPO / "docs" / "console.png")
    assert page.errors == []  # type: ignore[attr-defined]


def _chart_requests(page: Any) -> list[dict[str, Any]]:
    """The /api/candles answers the page asked for by visible range (points=N), in order."""
    return [r.json() for r in page.responses if r.ok]  # type: ignore[attr-defined]


def test_zooming_in_switches_the_candle_resolution(page: Any, world: dict[str, Any]) -> None:
    sym = world["symbol"]
    _row(page, sym).click()
    page.wait_for_function(f"() => document.querySelector('#chart-title').textContent === 'kraken {sym}'")
    page.wait_for_function("() => document.querySelector('#resolution').textContent !== ''", timeout=15000)
    page.wait_for_timeout(1000)
    first = next(c for c in _chart_requests(page) if c["symbol"] == sym)
    assert first["resolution"] in ("1h", "5m"), first["resolution"]  # a day in view
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    order = ["1w", "1d", "1h", "5m", "1m", "1s", "tick"]
    for _ in range(60):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(200)
        last = _chart_requests(page)[-1]["resolution"]
        if order.index(last) >= order.index("1m"):
            break
    answers = [c for c in _chart_requests(page) if c["symbol"] == sym]
    resolutions = [c["resolution"] for c in answers]
    assert order.index(resolutions[-1]) > order.index(first["resolution"]), resolutions
    spans = [datetime.fromisoformat(c["to"]) - datetime.fromisoformat(c["from"]) for c in answers]
    assert spans[-1] < spans[0] / 4  # it asked for the narrower visible range, never for an interval
    assert all(c["points"] is not None for c in answers)
    page.wait_for_function(f"() => document.querySelector('#resolution').textContent === '{resolutions[-1]}'")
    assert page.errors == []  # type: ignore[attr-defined]


def test_adding_an_instrument_in_settings_makes_its_prices_appear(
    page: Any, world: dict[str, Any], unique: str
) -> None:
    sym = f"G{unique[:6].upper()}/USD"
    page.fill("#add-form input[name=symbols]", sym)
    page.click("#add-form button[type=submit]")
    _row(page, sym).wait_for(timeout=15000)
    world["feed"].symbols.append(sym)  # its ingester starts publishing
    page.wait_for_function(f"() => /\\d/.test(document.querySelector('#watchlist tr[data-key=\"kraken:{sym}\"] .last')"
                           ".textContent)", timeout=20000)  # fmt: skip
    assert page.locator(f'#instruments tr[data-key="kraken:{sym}"]').text_content().count("enabled") == 1
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_bad_symbol_shows_its_validation_error_beside_the_field(page: Any) -> None:
    page.fill("#add-form input[name=symbols]", "BTC/XXX")
    page.click("#add-form button[type=submit]")
    err = page.locator('#add-form .error[data-field="symbols"]')
    err.wait_for()
    page.wait_for_function("() => document.querySelector('#add-form .error[data-field=\"symbols\"]').textContent")
    assert "XXX is not a Kraken quote currency" in err.text_content()
    page.fill("#add-form input[name=channels]", "gossip")
    page.fill("#add-form input[name=symbols]", "SOL/USD")
    page.click("#add-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#add-form .error[data-field=\"channels\"]').textContent")
    assert "no channel gossip" in page.locator('#add-form .error[data-field="channels"]').text_content()
