"""Binance spot, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from ingesters.base.registration import demo_ingest, demo_simulate, lazy_commands, resolver
from ingesters.binance.settings import BinanceSettings
from ingesters.binance.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from pulse.calendars import ALWAYS
from pulse.venues import DemoPlan, Venue

_DEMO_FAULTS = ("--disconnect-after", "1500", "--malformed-every", "500", "--skip-update-every", "200")


VENUE = Venue(
    name="binance",
    namespace="crypto",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=resolver(resolve, "crypto"),
    channel_topics=CHANNEL_TOPICS,
    calendar=ALWAYS,  # crypto trades around the clock
    settings_section="binance",
    settings_model=BinanceSettings,
    service="ingest-binance",
    commands=lazy_commands("ingesters.binance.commands"),
    demo=DemoPlan(
        symbols=("BTC/USDT", "ETH/USDT"),
        simulate=demo_simulate("binance", _DEMO_FAULTS),
        ingest=demo_ingest("binance", rest=True),
        group="optional",
    ),
    description="Binance spot combined streams (crypto): trades, book tickers, diff-depth books synced to REST",
)
