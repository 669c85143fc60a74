"""Repair: decoding Kraken's REST ``Trades`` pages beside decoding the same trades from the WebSocket, same run.

The corpus is one market's trades (:class:`ingesters.kraken.simulator_feed.SymbolMarket`), written both ways: as
REST pages of 1,000 trades (the local venue's :class:`~ingesters.kraken.simulator_rest.TradeTape` answer, what
``pulse repair`` reads) and as WebSocket v2 ``trade`` updates of one trade each (what the live ingester reads,
:class:`ingesters.kraken.parser.KrakenFeedParser`: the baseline). Median of 3 timed passes after a warm-up, both
in this process, alternating. Not measured here: the network and Kraken's ~1 request/s pacing (a real repair
waits on those), nor the database write (the sink's writer, measured in ``bench/sink.py``).
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

from bench.harness import Report, fmt_rate, median, ratio
from ingesters.kraken.parser import KrakenFeedParser
from ingesters.kraken.protocol import format_rfc3339_ns
from ingesters.kraken.rest import parse_trades
from ingesters.kraken.simulator_feed import SymbolMarket
from ingesters.kraken.simulator_rest import TradeTape, _json

SYMBOL = "BTC/USD"
PAGE = 1000


def corpus(trades: int) -> tuple[list[bytes], list[str]]:
    """(REST answer bodies of up to 1,000 trades, one WebSocket trade frame per trade) for the same trades."""
    market = SymbolMarket(SYMBOL, 1, 8, seed=1)
    tape = TradeTape({SYMBOL: (1, 8)}, maxlen=trades)
    frames = []
    t = 1_796_454_000_000_000_000
    for _ in range(trades):
        t += 7_654_321
        data = market.make_trade(format_rfc3339_ns(t))
        tape.add(data)
        frames.append(json.dumps({"channel": "trade", "type": "update", "data": [data]}, default=str))
    pages, since = [], 0
    while True:
        status, body = tape.answer({"pair": "XBTUSD", "since": str(since), "count": str(PAGE)})
        assert status == HTTPStatus.OK and not body["error"]
        rows = body["result"]["XBTUSD"]
        if not rows:
            break
        pages.append(_json(status, body).body)
        since = int(body["result"]["last"])
    return pages, frames


def measure(*, quick: bool) -> dict[str, float]:
    pages, frames = corpus(20_000 if quick else 60_000)
    rest_runs, ws_runs = [], []
    for _ in range(4):  # the first pass of each is the warm-up
        t0 = time.perf_counter()
        n_rest = sum(len(parse_trades(body, SYMBOL, 0)[0]) for body in pages)
        rest_runs.append(time.perf_counter() - t0)
        parser = KrakenFeedParser(depth=10)
        t0 = time.perf_counter()
        n_ws = sum(len(parser.feed(f).events) for f in frames)
        ws_runs.append(time.perf_counter() - t0)
    if n_rest != n_ws or n_rest != len(frames):
        raise RuntimeError(f"repair bench: {n_rest} trades from REST, {n_ws} from the WebSocket, {len(frames)} made")
    rest_s, ws_s = median(rest_runs[1:]), median(ws_runs[1:])
    return {"trades": len(frames), "pages": len(pages), "rest_trades_per_s": n_rest / rest_s,
            "ws_trades_per_s": n_ws / ws_s}  # fmt: skip


def run(report: Report, *, quick: bool) -> dict[str, Any]:
    report.section("Repair: Kraken REST Trades pages beside the WebSocket trade parser (same run)")
    m = measure(quick=quick)
    report.add("kraken_ws_trade_parse_baseline_per_s", m["ws_trades_per_s"],
               f"kraken    WebSocket trade updates, one trade per frame (baseline, this run): "
               f"{fmt_rate(m['ws_trades_per_s'])} trades/s")  # fmt: skip
    report.add("kraken_rest_trades_parse_per_s", m["rest_trades_per_s"],
               f"kraken    REST Trades pages ({m['pages']} pages of ≤{PAGE}, {m['trades']:,} trades, parse_trades): "
               f"{fmt_rate(m['rest_trades_per_s'])} trades/s")  # fmt: skip
    share = ratio(m["rest_trades_per_s"], m["ws_trades_per_s"])
    report.add("kraken_rest_vs_ws_trade_parse_ratio", share, f"kraken    REST ÷ WebSocket trades/s: {share:.2f}")
    return {**m, "ratio": share}
