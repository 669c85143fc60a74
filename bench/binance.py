"""Binance: the parser (frames → events, books kept in sync) beside Kraken's, measured in the same run.

The corpus is what the local venue sends, generated without a server from
:class:`ingesters.binance.simulator_market.SymbolMarket`: combined-stream frames of trades, book tickers (on every
change of the top of book) and 100 ms-style depth diffs (one per symbol every 20 market steps), for the same
symbols count as Kraken's corpus. Each pass starts a fresh :class:`BinanceParser`, syncs every book from a
snapshot (not timed) and then times ``feed`` over every frame; the median of 3 passes after a warm-up. The Kraken
figure is :func:`bench.kraken.parse_only` run right before it, so both see the same machine state. Not measured
here: the Binance ingester through a broker (Kraken's throughput/latency runs have no Binance twin yet).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import kraken
from bench.harness import Report, fmt_rate, median, ratio
from ingesters.binance.parser import BinanceParser
from ingesters.binance.simulator_market import SymbolMarket, wire

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
_DIFF_EVERY = 20  # market steps per diff flush


def corpus(frames: int, seed: int = 1) -> tuple[dict[str, bytes], list[str]]:
    """(the REST snapshot body per symbol, ``frames`` stream frames as the venue writes them)."""
    markets = [SymbolMarket(s, s.replace("/", ""), 2, 5, seed=seed) for s in SYMBOLS]
    snapshots = {m.symbol: json.dumps(m.snapshot(1000)).encode() for m in markets}
    out: list[str] = []
    t_ms = 1_700_000_000_000
    step = 0
    while len(out) < frames:
        m = markets[step % len(markets)]
        step += 1
        t_ms += 1
        name = m.venue_symbol.lower()
        if m.rng.random() < 0.3:
            t, _ = m.make_trade()
            data = {"e": "trade", "E": t_ms, "s": m.venue_symbol, "t": t.trade_id, "p": f"{t.price:.8f}",
                    "q": f"{t.qty:.8f}", "T": t_ms, "m": t.side == "sell", "M": True}  # fmt: skip
            out.append(json.dumps({"stream": f"{name}@trade", "data": data}, separators=(",", ":")))
        else:
            before = m.top()
            m.step_book()
            if m.top() != before:
                b, bq, a, aq = m.top()
                data = {"u": m.update_id, "s": m.venue_symbol, "b": wire(b, m.pp), "B": wire(bq, m.sp),
                        "a": wire(a, m.pp), "A": wire(aq, m.sp)}  # fmt: skip
                out.append(json.dumps({"stream": f"{name}@bookTicker", "data": data}, separators=(",", ":")))
        if step % _DIFF_EVERY == 0:
            for mk in markets:
                diff = mk.take_diff()
                if diff is not None:
                    first, last, bids, asks = diff
                    data = {"e": "depthUpdate", "E": t_ms, "s": mk.venue_symbol, "U": first, "u": last, "b": bids,
                            "a": asks}  # fmt: skip
                    stream = f"{mk.venue_symbol.lower()}@depth@100ms"
                    out.append(json.dumps({"stream": stream, "data": data}, separators=(",", ":")))
    return snapshots, out[:frames]


def parse_only(*, quick: bool) -> dict[str, float]:
    snapshots, frames = corpus(8_000 if quick else 20_000)
    runs = []
    for _ in range(4):  # the first pass is the warm-up
        parser = BinanceParser(depth=1000)
        for sym in SYMBOLS:
            parser.track_book(sym)
        pending = set(SYMBOLS)
        i = 0
        while pending:  # buffer the first diffs, then apply each symbol's snapshot (untimed)
            out = parser.feed(frames[i])
            i += 1
            for sym in out.snapshots:
                parser.apply_snapshot(sym, snapshots[sym])
                pending.discard(sym)
        events = 0
        t0 = time.perf_counter()
        for f in frames[i:]:
            events += len(parser.feed(f).events)
        runs.append((time.perf_counter() - t0, events, len(frames) - i))
        if parser.resyncs:
            raise RuntimeError(f"binance parse-only: {parser.resyncs} book resyncs")
    elapsed = median([r[0] for r in runs[1:]])
    return {"frames": runs[-1][2], "frames_per_s": runs[-1][2] / elapsed, "events_per_s": runs[-1][1] / elapsed}


def run(report: Report, *, quick: bool) -> dict[str, Any]:
    report.section("Binance: parser alone, beside Kraken's (same run)")
    k = kraken.parse_only(quick=quick)
    b = parse_only(quick=quick)
    report.add("kraken_parse_baseline_events_per_s", k["events_per_s"],
               f"kraken    parser alone (baseline, this run): {fmt_rate(k['frames_per_s'])} frames/s, "
               f"{fmt_rate(k['events_per_s'])} events/s")  # fmt: skip
    report.add("binance_parse_only_events_per_s", b["events_per_s"],
               f"binance   parser alone (BinanceParser.feed over {b['frames']:,} combined-stream frames, books kept "
               f"in sync): {fmt_rate(b['frames_per_s'])} frames/s, {fmt_rate(b['events_per_s'])} events/s")  # fmt: skip
    share = ratio(b["events_per_s"], k["events_per_s"])
    report.add(
        "binance_vs_kraken_parse_ratio", share, f"binance   events/s ÷ kraken events/s (parser alone): {share:.2f}"
    )
    return {"kraken": k, "binance": b, "ratio": share}
