"""Dukascopy instruments: datafeed code ↔ canonical symbol, price divisor, volume unit, weekly close.

Where the numbers come from (checked, not guessed):

* **Divisor** (``price = raw integer / divisor``). Dukascopy publishes a ``pipValue`` per instrument in its
  instrument metadata; the datafeed stores prices in pipettes, so ``divisor = 10 / pipValue`` (EUR/USD
  pip 0.0001 → 100,000; USD/JPY pip 0.01 → 1,000; XAU/USD pip 0.01 → 1,000; BTC/USD pip 1 → 10).
  Values taken from the metadata snapshot in dukascopy-node (``instrument-meta-data.json``, whose
  ``decimalFactor`` is computed that way; it overrides three crypto tokens where the rule is wrong, none of
  them listed here) and cross-checked against real files: EUR/USD 2019-02-04 decodes to 1.14545 with
  100,000; BTC/USD 2023-02-20 12:00 decodes to 24,921.5 with 10.
* **Volume unit**. Tick and candle volumes of currency pairs are float32 counts of *millions* of the base
  currency (dukascopy-node's default ``volumeUnits: millions``; Dukascopy's own CSV exports show 2.3 as
  2,300,000). For metals, indices and crypto the unit is not documented anywhere we could verify, so
  ``volume_multiplier`` is ``None`` and quotes carry no size rather than a wrong one.
* **Weekly close**. Dukascopy's metadata gives each instrument's weekly closed window in a market time zone
  (currency pairs: Friday 14:00 → Sunday 14:00 America/Los_Angeles, i.e. 17:00 New York; that is Fri 22:00
  → Sun 22:00 UTC in winter and 21:00 → 21:00 UTC in summer). Hours wholly inside it hold no ticks.

To add an instrument: look up its ``historical_filename`` (the URL code) and ``pipValue`` in Dukascopy's
instrument metadata (or dukascopy-node's generated ``instrument-meta-data.json``), decode one real hour
with the resulting divisor and check the price against a published quote, then add a line to ``_TABLE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pulse.errors import SymbolError
from pulse.symbols import canonical


@dataclass(frozen=True, slots=True)
class WeeklyClose:
    """A weekly window with no trading, in the market's own time zone. Weekdays are ISO (Mon=1 … Sun=7).

    ``end`` is exclusive: Dukascopy's metadata says "until 13:59" and we store 14:00.
    """

    start_day: int
    start_hhmm: tuple[int, int]
    end_day: int
    end_hhmm: tuple[int, int]
    tz: str

    def covers(self, start: datetime, end: datetime) -> bool:
        """True when ``[start, end)`` (aware datetimes, at most a few hours long) lies wholly inside a
        closed window. Returns False when the time zone database is unavailable: never certain then."""
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            return False
        local = start.astimezone(zone)
        # The window that could contain `start`: the one opening on the most recent start_day.
        days_back = (local.isoweekday() - self.start_day) % 7
        opened = (local - timedelta(days=days_back)).replace(
            hour=self.start_hhmm[0], minute=self.start_hhmm[1], second=0, microsecond=0
        )
        if opened > local:
            opened -= timedelta(days=7)
        span = (self.end_day - self.start_day) % 7
        closed_until = (opened + timedelta(days=span)).replace(hour=self.end_hhmm[0], minute=self.end_hhmm[1])
        # Aware arithmetic is wall-clock arithmetic; converting each end to UTC applies its own offset,
        # so a DST change inside the window is honoured.
        opened_utc = opened.astimezone(UTC)
        until_utc = closed_until.astimezone(UTC)
        return opened_utc <= start.astimezone(UTC) and end.astimezone(UTC) <= until_utc


@dataclass(frozen=True, slots=True)
class Instrument:
    """One Dukascopy instrument.

    ``code`` is the datafeed path segment (``EURUSD``), ``symbol`` the canonical Pulse symbol (``EUR/USD``).
    ``divisor`` is a power of ten; ``decimals`` is its exponent, the number of fraction digits of a price.
    ``volume_multiplier`` turns a Dukascopy volume into base-currency units, or is ``None`` when unverified.
    """

    code: str
    symbol: str
    divisor: int
    description: str
    volume_multiplier: int | None = None
    weekly_close: WeeklyClose | None = None
    #: the JSON data API's name for it (``EUR-USD``, ``USA500.IDX-USD``); empty: the symbol with ``-`` for ``/``
    api_name: str = ""

    @property
    def api_code(self) -> str:
        """The instrument's path segment in the JSON data API (see :mod:`.jsonapi`)."""
        return self.api_name or self.symbol.replace("/", "-")

    def __post_init__(self) -> None:
        if self.divisor < 1 or 10 ** (len(str(self.divisor)) - 1) != self.divisor:
            raise ValueError(f"{self.code}: divisor {self.divisor} is not a power of ten")

    @property
    def decimals(self) -> int:
        return len(str(self.divisor)) - 1

    def certainly_closed(self, hour_start: datetime) -> bool:
        """True when the hour starting at ``hour_start`` is wholly inside the weekly close (no ticks)."""
        if self.weekly_close is None:
            return False
        return self.weekly_close.covers(hour_start, hour_start + timedelta(hours=1))


_FX_CLOSE = WeeklyClose(5, (14, 0), 7, (14, 0), "America/Los_Angeles")
_METAL_CLOSE = WeeklyClose(5, (14, 0), 7, (15, 0), "America/Los_Angeles")
# Dukascopy writes "US/Central", a legacy alias of America/Chicago that slim tz databases may lack.
_US_INDEX_CLOSE = WeeklyClose(5, (15, 15), 7, (17, 0), "America/Chicago")
_DE_INDEX_CLOSE = WeeklyClose(5, (22, 15), 1, (0, 0), "Europe/Berlin")

_MILLIONS = 1_000_000

# (code, canonical symbol, divisor, description) for currency pairs; all pipValue 0.0001 or 0.01 (JPY).
_FX = [
    ("EURUSD", "EUR/USD", 100_000, "Euro vs US Dollar"),
    ("GBPUSD", "GBP/USD", 100_000, "Pound Sterling vs US Dollar"),
    ("USDJPY", "USD/JPY", 1_000, "US Dollar vs Japanese Yen"),
    ("USDCHF", "USD/CHF", 100_000, "US Dollar vs Swiss Franc"),
    ("AUDUSD", "AUD/USD", 100_000, "Australian Dollar vs US Dollar"),
    ("USDCAD", "USD/CAD", 100_000, "US Dollar vs Canadian Dollar"),
    ("NZDUSD", "NZD/USD", 100_000, "New Zealand Dollar vs US Dollar"),
    ("EURGBP", "EUR/GBP", 100_000, "Euro vs Pound Sterling"),
    ("EURJPY", "EUR/JPY", 1_000, "Euro vs Japanese Yen"),
    ("EURCHF", "EUR/CHF", 100_000, "Euro vs Swiss Franc"),
    ("EURCAD", "EUR/CAD", 100_000, "Euro vs Canadian Dollar"),
    ("EURAUD", "EUR/AUD", 100_000, "Euro vs Australian Dollar"),
    ("EURNZD", "EUR/NZD", 100_000, "Euro vs New Zealand Dollar"),
    ("GBPJPY", "GBP/JPY", 1_000, "Pound Sterling vs Japanese Yen"),
    ("GBPCHF", "GBP/CHF", 100_000, "Pound Sterling vs Swiss Franc"),
    ("GBPAUD", "GBP/AUD", 100_000, "Pound Sterling vs Australian Dollar"),
    ("GBPCAD", "GBP/CAD", 100_000, "Pound Sterling vs Canadian Dollar"),
    ("AUDJPY", "AUD/JPY", 1_000, "Australian Dollar vs Japanese Yen"),
    ("AUDCAD", "AUD/CAD", 100_000, "Australian Dollar vs Canadian Dollar"),
    ("AUDCHF", "AUD/CHF", 100_000, "Australian Dollar vs Swiss Franc"),
    ("AUDNZD", "AUD/NZD", 100_000, "Australian Dollar vs New Zealand Dollar"),
    ("CADJPY", "CAD/JPY", 1_000, "Canadian Dollar vs Japanese Yen"),
    ("CADCHF", "CAD/CHF", 100_000, "Canadian Dollar vs Swiss Franc"),
    ("CHFJPY", "CHF/JPY", 1_000, "Swiss Franc vs Japanese Yen"),
    ("NZDJPY", "NZD/JPY", 1_000, "New Zealand Dollar vs Japanese Yen"),
    ("NZDCAD", "NZD/CAD", 100_000, "New Zealand Dollar vs Canadian Dollar"),
    ("USDSEK", "USD/SEK", 100_000, "US Dollar vs Swedish Krona"),
    ("USDNOK", "USD/NOK", 100_000, "US Dollar vs Norwegian Krone"),
    ("USDSGD", "USD/SGD", 100_000, "US Dollar vs Singapore Dollar"),
    ("USDHKD", "USD/HKD", 100_000, "US Dollar vs Hong Kong Dollar"),
    ("USDMXN", "USD/MXN", 100_000, "US Dollar vs Mexican Peso"),
    ("USDZAR", "USD/ZAR", 100_000, "US Dollar vs South African Rand"),
]

_TABLE: tuple[Instrument, ...] = (
    *(Instrument(c, s, d, desc, _MILLIONS, _FX_CLOSE) for c, s, d, desc in _FX),
    # Metals: pipValue 0.01.
    Instrument("XAUUSD", "XAU/USD", 1_000, "Spot gold", None, _METAL_CLOSE),
    Instrument("XAGUSD", "XAG/USD", 1_000, "Spot silver", None, _METAL_CLOSE),
    # Index CFDs: pipValue 0.01. Dukascopy names them USA500.IDX/USD etc.; Pulse symbols allow no dot.
    # The data API keeps Dukascopy's dotted names (dukascopy-node's instrument metadata, field `code`).
    Instrument("USA500IDXUSD", "USA500IDX/USD", 1_000, "USA 500 Index", None, _US_INDEX_CLOSE, "USA500.IDX-USD"),
    Instrument(
        "USATECHIDXUSD", "USATECHIDX/USD", 1_000, "USA 100 Technical Index", None, _US_INDEX_CLOSE, "USATECH.IDX-USD"
    ),
    Instrument("USA30IDXUSD", "USA30IDX/USD", 1_000, "USA 30 Index", None, _US_INDEX_CLOSE, "USA30.IDX-USD"),
    Instrument("DEUIDXEUR", "DEUIDX/EUR", 1_000, "Germany 40 Index", None, _DE_INDEX_CLOSE, "DEU.IDX-EUR"),
    # Crypto: pipValue 1; trades through the weekend.
    Instrument("BTCUSD", "BTC/USD", 10, "Bitcoin vs US Dollar"),
    Instrument("ETHUSD", "ETH/USD", 10, "Ether vs US Dollar"),
)

_BY_CODE = {i.code: i for i in _TABLE}
_BY_SYMBOL = {i.symbol: i for i in _TABLE}
_CODE = re.compile(r"^[A-Z0-9]{2,32}$")


def instruments() -> tuple[Instrument, ...]:
    """Every instrument in the table, in table order."""
    return _TABLE


def lookup(name: str) -> Instrument:
    """Find an instrument by Dukascopy code (``EURUSD``, any case) or Pulse symbol (``EUR/USD``, ``EUR-USD``).

    Raises :class:`~pulse.errors.SymbolError` for an unknown instrument, saying how to add one.
    """
    if not isinstance(name, str) or not name.strip():
        raise SymbolError(f"instrument name must be a non-empty string, got {name!r}")
    text = name.strip().upper()
    found = _BY_CODE.get(text)
    if found is None and ("/" in text or "-" in text):
        try:
            found = _BY_SYMBOL.get(canonical(text))
        except SymbolError:
            found = None
    if found is None:
        hint = "" if _CODE.match(text.replace("/", "").replace("-", "")) else " (malformed name)"
        raise SymbolError(
            f"unknown Dukascopy instrument {name!r}{hint}. Known: {', '.join(sorted(_BY_CODE))}. "
            "To add one, find its datafeed code ('historical_filename') and 'pipValue' in Dukascopy's "
            "instrument metadata, set divisor = 10 / pipValue, verify it by decoding one real hour of ticks "
            "against a published price, and add it to _TABLE in ingesters/dukascopy/instruments.py"
        )
    return found
