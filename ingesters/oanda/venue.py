"""OANDA, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from typing import Any

from ingesters.base.registration import lazy_commands
from ingesters.oanda.settings import OandaSettings, oanda_token
from ingesters.oanda.symbols import instrument_to_symbol, is_instrument, symbol_to_instrument
from pulse.calendars import OANDA_FX
from pulse.venues import DemoPlan, Resolved, Venue


def _resolve(text: str) -> Resolved:
    name = text.strip().upper()
    symbol = instrument_to_symbol(name) if is_instrument(name) else None
    if symbol is None:
        instrument = symbol_to_instrument(name.replace("-", "/"))  # refuses anything malformed
        symbol = instrument_to_symbol(instrument)
    base, quote = symbol.split("/")
    # OANDA quotes FX to 5 decimals (3 for JPY crosses); units are whole numbers. CFDs (XAU_USD, SPX500_USD)
    # differ: the live stream's prices are the truth, this default is for validating paper orders.
    fx = len(base) == 3 and base.isalpha()
    price_precision = 3 if quote == "JPY" or (fx and base in {"XAU", "XPT"}) else 5
    return Resolved(symbol, symbol_to_instrument(symbol), "fx" if fx else "cfd", price_precision, 0)


def _demo_simulate(port: int, rate: float, symbols: list[str], faults: bool) -> list[str]:
    names = ",".join(symbol_to_instrument(s) for s in symbols)
    return ["simulate", "oanda", "--port", str(port), "--rate", str(max(5.0, rate / 6)), "--symbols", names]


def _demo_ingest(port: int, symbols: list[str]) -> list[str]:
    names = ",".join(symbol_to_instrument(s) for s in symbols)
    return ["ingest", "oanda", "--url", f"http://127.0.0.1:{port}", "--symbols", names]


#: the local venue streams around the clock, so the demo's ingester does not sleep through the weekend close;
#: the token is the local venue's, never a real credential
_DEMO_ENV = {
    "OANDA_TOKEN": "demo-local-venue-token",
    "PULSE_OANDA__MARKET_HOURS": "always",
    "PULSE_OANDA__ACCOUNT_ID": "101-004-0000000-001",
}


def _env_token(settings: Any) -> list[str]:
    return [oanda_token(settings)]


VENUE = Venue(
    name="oanda",
    namespace="fx",
    channels=("quote",),
    default_channels=("quote",),
    live=True,
    resolve=_resolve,
    channel_topics={"quote": ("quote",)},
    calendar=OANDA_FX,
    settings_section="oanda",
    settings_model=OandaSettings,
    secret_settings=("token",),
    extra_secrets=_env_token,
    service="ingest-oanda",
    commands=lazy_commands("ingesters.oanda.commands"),
    demo=DemoPlan(
        symbols=("EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD"),
        simulate=_demo_simulate,
        ingest=_demo_ingest,
        env=_DEMO_ENV,
        group="fx",
    ),
    description="OANDA v20 pricing stream (FX): quotes with the full ladder; sleeps while the market is closed",
)
