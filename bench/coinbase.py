"""Coinbase: the parser (messages → events, books kept) beside Kraken's, measured in the same run.

The corpus is what the local venue sends, generated without a server from
:class:`ingesters.coinbase.simulator_market.ProductMarket`: ``market_trades`` and ``ticker`` messages for every trade
(30% of market steps) and an ``l2_data`` update for every book step, each in its envelope with a continuous
``sequence_num``, for as many products as Kraken's corpus has symbols. Each pass starts a fresh
:class:`CoinbaseParser`, loads every book from its ``l2_data`` snapshot (not timed) and then times ``feed`` over every
message; the median of 3 passes after a warm-up. The Kraken figure is :func:`bench.kraken.parse_only`, and the two
run twice in the order Kraken, Coinbase, Coinbase, Kraken (whichever runs second measured up to 1.5x apart on this
shared machine): each figure is the better of its two, so both see the same machine state. Not measured here: the
Coinbase ingester through a broker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import kraken
from bench.harness import Report, fmt_rate, median, ratio
from ingesters.coinbase.parser import CoinbaseParser
from ingesters.coinbase.schemas import format_time
from ingesters.coinbase.simulator_market import ProductMarket

SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD")


def _envelope(channel: str, seq: int, t_ns: int, events: list[dict]) -> str:
    return json.dumps({"channel": channel, "client_id": "", "timestamp": format_time(t_ns), "sequence_num": seq,
                       "events": events}, separators=(",", ":"))  # fmt: skip


def corpus(messages: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """(the l2_data snapshot of each product, ``messages`` data messages as the venue writes them)."""
    markets = [ProductMarket(s, s.replace("/", "-"), 2, 8, seed=seed) for s in SYMBOLS]
    t_ns = 1_700_000_000_000_000_000
    seq = 0
    snaps = []
    for m in markets:
        event = {"type": "snapshot", "product_id": m.product_id, "updates": m.l2_snapshot(format_time(t_ns))}
        snaps.append(_envelope("l2_data", seq, t_ns, [event]))
        seq += 1
    out: list[str] = []
    step = 0
    while len(out) < messages:
        m = markets[step % len(markets)]
        step += 1
        t_ns += 1_000_000
        now = format_time(t_ns)
        if m.rng.random() < 0.3:
            t = m.make_trade()
            raw = {"trade_id": t.trade_id, "product_id": m.product_id, "price": str(t.price), "size": str(t.size),
                   "side": "SELL" if t.side == "buy" else "BUY", "time": now}  # fmt: skip
            out.append(_envelope("market_trades", seq, t_ns, [{"type": "update", "trades": [raw]}]))
            out.append(_envelope("ticker", seq + 1, t_ns, [{"type": "update", "tickers": [m.ticker()]}]))
            seq += 2
        else:
            changes = m.step_book()
            if changes:
                event = {"type": "update", "product_id": m.product_id, "updates": m.l2_updates(changes, now)}
                out.append(_envelope("l2_data", seq, t_ns, [event]))
                seq += 1
    return snaps, out[:messages]


def parse_only(*, quick: bool) -> dict[str, float]:
    snaps, messages = corpus(8_000 if quick else 20_000)
    runs = []
    for _ in range(4):  # the first pass is the warm-up
        parser = CoinbaseParser(depth=1000)
        for sym in SYMBOLS:
            parser.track_book(sym)
        for s in snaps:  # untimed: the books' snapshots
            parser.feed(s)
        events = 0
        t0 = time.perf_counter()
        for m in messages:
            events += len(parser.feed(m).events)
        runs.append((time.perf_counter() - t0, events, len(messages)))
        if parser.gaps or parser.duplicates:
            raise RuntimeError(f"coinbase parse-only: {parser.gaps} gaps, {parser.duplicates} dropped")
    elapsed = median([r[0] for r in runs[1:]])
    return {"frames": runs[-1][2], "frames_per_s": runs[-1][2] / elapsed, "events_per_s": runs[-1][1] / elapsed}


def run(report: Report, *, quick: bool) -> dict[str, Any]:
    report.section("Coinbase: parser alone, beside Kraken's (same run)")
    k1 = kraken.parse_only(quick=quick)
    c1 = parse_only(quick=quick)
    c2 = parse_only(quick=quick)
    k2 = kraken.parse_only(quick=quick)
    k = max(k1, k2, key=lambda r: r["events_per_s"])
    c = max(c1, c2, key=lambda r: r["events_per_s"])
    report.add("kraken_parse_baseline_events_per_s", k["events_per_s"],
               f"kraken    parser alone (baseline, this run, better of two): {fmt_rate(k['frames_per_s'])} frames/s, "
               f"{fmt_rate(k['events_per_s'])} events/s")  # fmt: skip
    report.add("coinbase_parse_only_events_per_s", c["events_per_s"],
               f"coinbase  parser alone (CoinbaseParser.feed over {c['frames']:,} messages, books kept, better of 2): "
               f"{fmt_rate(c['frames_per_s'])} messages/s, {fmt_rate(c['events_per_s'])} events/s")  # fmt: skip
    share = ratio(c["events_per_s"], k["events_per_s"])
    report.add(
        "coinbase_vs_kraken_parse_ratio", share, f"coinbase  events/s ÷ kraken events/s (parser alone): {share:.2f}"
    )
    return {"kraken": k, "coinbase": c, "ratio": share}
