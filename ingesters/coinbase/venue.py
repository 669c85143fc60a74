"""Coinbase Advanced Trade, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in
``pyproject.toml``)."""

from __future__ import annotations

from ingesters.base.registration import demo_ingest, demo_simulate, lazy_commands, lazy_history, resolver
from ingesters.coinbase.settings import CoinbaseSettings
from ingesters.coinbase.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from pulse.calendars import ALWAYS
from pulse.venues import DemoPlan, HistorySource, Venue

_DEMO_FAULTS = ("--disconnect-after", "1500", "--malformed-every", "500", "--skip-sequence-every", "300")


VENUE = Venue(
    name="coinbase",
    namespace="crypto",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=resolver(resolve, "crypto"),
    channel_topics=CHANNEL_TOPICS,
    calendar=ALWAYS,  # crypto trades around the clock
    settings_section="coinbase",
    settings_model=CoinbaseSettings,
    service="ingest-coinbase",
    commands=lazy_commands("ingesters.coinbase.commands"),
    history=HistorySource(label="coinbase REST", channel="trade", fetch=lazy_history("ingesters.coinbase.history")),
    demo=DemoPlan(
        symbols=("BTC/USD", "ETH/USD"),
        simulate=demo_simulate("coinbase", _DEMO_FAULTS),
        ingest=demo_ingest("coinbase", rest=True),
        group="optional",
    ),
    description="Coinbase Advanced Trade market data (crypto): market trades, tickers, level2 books",
)
