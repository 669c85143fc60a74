"""Kraken, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from typing import Any

from ingesters.kraken.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from pulse.venues import DemoPlan, Resolved, Venue


def _resolve(text: str) -> Resolved:
    p = resolve(text)
    return Resolved(p.symbol, p.venue_symbol, "crypto", p.price_precision, p.size_precision)


def _commands() -> dict[str, Any]:
    from ingesters.kraken import commands

    return commands.COMMANDS


def _demo_simulate(port: int, rate: float, symbols: list[str], faults: bool) -> list[str]:
    args = ["simulate", "kraken", "--port", str(port), "--rate", str(rate), "--symbols", ",".join(symbols)]
    if faults:
        args += ["--disconnect-after", "1200", "--malformed-every", "500", "--bad-checksum-every", "400"]
    return args


def _demo_ingest(port: int, symbols: list[str]) -> list[str]:
    return ["ingest", "kraken", "--url", f"ws://127.0.0.1:{port}", "--symbols", ",".join(symbols)]


VENUE = Venue(
    name="kraken",
    namespace="crypto",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=_resolve,
    channel_topics=CHANNEL_TOPICS,
    settings_section="kraken",
    service="ingest-kraken",
    commands=_commands,
    demo=DemoPlan(symbols=("BTC/USD", "ETH/USD", "SOL/USD"), simulate=_demo_simulate, ingest=_demo_ingest),
    description="Kraken WebSocket v2 (crypto): trades, tickers/quotes, checksummed books",
)
