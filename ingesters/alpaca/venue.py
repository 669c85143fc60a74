"""Alpaca (US equities), as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in
``pyproject.toml``). Importing this module stays cheap: the market calendar loads its session table on first use."""

from __future__ import annotations

from ingesters.alpaca.calendar import US_EQUITIES
from ingesters.alpaca.settings import AlpacaSettings
from ingesters.alpaca.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from ingesters.base.registration import demo_ingest, lazy_commands, lazy_history, resolver
from pulse.venues import DemoPlan, HistorySource, Venue

#: the local venue's credentials (not a real account's): the demo's ingester authenticates with them
DEMO_KEY, DEMO_SECRET = "PKDEMOLOCALVENUE", "demo-local-venue-secret"


def _demo_simulate(port: int, rate: float, symbols: list[str], faults: bool) -> list[str]:
    rate = max(5.0, rate / 4)
    args = [
        "simulate",
        "alpaca",
        "--port",
        str(port),
        "--rate",
        str(rate),
        "--symbols",
        ",".join(symbols),
        "--key",
        DEMO_KEY,
    ]
    if faults:
        args += ["--disconnect-after", "1500", "--malformed-every", "400"]
    return args


#: the local venue streams around the clock, so the demo's ingester ignores NYSE hours; the credentials are the
#: local venue's, passed as settings through the environment (never on a command line)
_DEMO_ENV = {
    "PULSE_ALPACA__KEY": DEMO_KEY,
    "PULSE_ALPACA__SECRET": DEMO_SECRET,
    "PULSE_ALPACA__MARKET_HOURS": "always",
    "ALPACA_SIMULATOR_SECRET": DEMO_SECRET,
}

VENUE = Venue(
    name="alpaca",
    namespace="equities",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=resolver(resolve, "equity"),
    channel_topics=CHANNEL_TOPICS,
    calendar=US_EQUITIES,  # NYSE regular sessions: holidays and early closes (exchange-calendars, cached)
    history=HistorySource(label="alpaca REST", channel="trade", fetch=lazy_history("ingesters.alpaca.rest")),
    settings_section="alpaca",
    settings_model=AlpacaSettings,
    secret_settings=("key", "secret"),
    service="ingest-alpaca",
    commands=lazy_commands("ingesters.alpaca.commands"),
    demo=DemoPlan(
        symbols=("AAPL", "TSLA"),
        simulate=_demo_simulate,
        ingest=demo_ingest("alpaca", path="/v2"),
        env=_DEMO_ENV,
        group="optional",
    ),
    description="Alpaca market data v2 (US equities): trades, quotes and minute bars; sleeps outside NYSE sessions",
)
