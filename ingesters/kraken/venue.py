"""Kraken, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from ingesters.base.registration import demo_ingest, demo_simulate, lazy_commands, lazy_history, resolver
from ingesters.kraken.settings import KrakenSettings
from ingesters.kraken.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from pulse.venues import DemoPlan, HistorySource, Venue

_DEMO_FAULTS = ("--disconnect-after", "1200", "--malformed-every", "500", "--bad-checksum-every", "400")


VENUE = Venue(
    name="kraken",
    namespace="crypto",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=resolver(resolve, "crypto"),
    channel_topics=CHANNEL_TOPICS,
    settings_section="kraken",
    settings_model=KrakenSettings,
    service="ingest-kraken",
    commands=lazy_commands("ingesters.kraken.commands"),
    demo=DemoPlan(
        symbols=("BTC/USD", "ETH/USD", "SOL/USD"),
        simulate=demo_simulate("kraken", _DEMO_FAULTS),
        ingest=demo_ingest("kraken"),
    ),
    history=HistorySource(label="kraken REST", channel="trade", fetch=lazy_history("ingesters.kraken.rest")),
    description="Kraken WebSocket v2 (crypto): trades, tickers/quotes, checksummed books",
)
