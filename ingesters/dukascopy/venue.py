"""Dukascopy, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingesters.base.registration import lazy_commands, lazy_history
from ingesters.dukascopy.instruments import lookup
from ingesters.dukascopy.settings import DukascopySettings
from pulse.errors import ConfigError
from pulse.venues import DemoPlan, HistorySource, Resolved, Venue


def _resolve(text: str) -> Resolved:
    inst = lookup(text)
    asset = "fx" if inst.weekly_close is not None and len(inst.code) == 6 else "other"
    return Resolved(inst.symbol, inst.code, asset, inst.decimals, 2)


def _calendar(symbol: str) -> Any:
    from ingesters.dukascopy.history import calendar

    return calendar(symbol)


#: the real Dukascopy hours shipped next to the repository (EURUSD 2019-02-04 00:00-04:00), for the demo
DEMO_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dukascopy"
DEMO_RANGE = ("2019-02-04T00", "2019-02-04T04")


def _demo_check() -> None:
    if not DEMO_DATA.is_dir():
        raise ConfigError(f"the Dukascopy backfill needs the shipped Dukascopy files at {DEMO_DATA}")


def _demo_simulate(port: int, rate: float, symbols: list[str], faults: bool) -> list[str]:
    return ["simulate", "dukascopy", "--port", str(port), "--root", str(DEMO_DATA)]


def _demo_backfill(port: int) -> list[str]:
    start, end = DEMO_RANGE
    url = f"http://127.0.0.1:{port}/v1"  # the JSON data API layout (the default feed)
    return ["backfill", "dukascopy", "EURUSD", "--from", start, "--to", end, "--url", url, "--json"]


VENUE = Venue(
    name="dukascopy",
    namespace="historical",
    channels=("quote", "candle"),
    default_channels=("quote",),
    live=False,
    resolve=_resolve,
    # backfills travel as QuoteBatch messages on their own topic (with its own schema); --per-tick uses quote
    channel_topics={"quote": ("quote", "quote_batch"), "candle": ("candle",)},
    settings_section="dukascopy",
    settings_model=DukascopySettings,
    commands=lazy_commands("ingesters.dukascopy.commands"),
    demo=DemoPlan(
        symbols=("EUR/USD",), simulate=_demo_simulate, backfill=_demo_backfill, check=_demo_check, group="backfill"
    ),
    # market hours per instrument: FX, metals and indices close at the weekend (Dukascopy's weekly close)
    calendar_for=_calendar,
    # refills quotes of its own instruments and, for venues without a history (OANDA's FX), of the same symbol
    history=HistorySource(
        label="dukascopy", channel="quote", fetch=lazy_history("ingesters.dukascopy.history"), others=True
    ),
    description="Dukascopy historical tick and candle files (backfill)",
)
