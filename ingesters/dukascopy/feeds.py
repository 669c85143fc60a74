"""The two Dukascopy feeds behind one interface: where an hour or candle file lives, and how to decode it.

* ``api`` — the JSON data API Dukascopy moved to in July 2026 (:mod:`.jsonapi`); the default.
* ``bi5`` — the ``datafeed/…/HHh_ticks.bi5`` layout (:mod:`.bi5`), for mirrors and archives.

Both decode to the same :class:`~.bi5.TickRecord` / :class:`~.bi5.CandleRecord` values, so the backfill, its
checkpoints, sequence numbers and events do not depend on the feed (proved on an hour Dukascopy served in both
forms, see ``tests/unit/test_dukascopy_jsonapi.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ingesters.dukascopy import bi5, jsonapi
from ingesters.dukascopy.bi5 import CandleRecord, TickRecord
from ingesters.dukascopy.downloader import DATAFEED_URL, candle_url
from ingesters.dukascopy.instruments import Instrument
from pulse.errors import ConfigError

FeedName = Literal["api", "bi5"]
FEEDS: tuple[FeedName, ...] = ("api", "bi5")

_BI5_CANDLES: dict[int, Literal["min_1", "hour_1", "day_1"]] = {60: "min_1", 3_600: "hour_1", 86_400: "day_1"}
_API_CANDLES: dict[int, jsonapi.CandleSource] = {60: "minute", 3_600: "hour", 86_400: "day"}


@dataclass(frozen=True, slots=True)
class Feed:
    """One feed's URL layout and decoder. ``open_period`` asks for the hour (or candle period) still running:
    the data API has its own URL for it (``?from=<ms>``); the ``.bi5`` layout has none (the file appears when
    the period is over)."""

    name: FeedName

    @property
    def default_url(self) -> str:
        return jsonapi.API_URL if self.name == "api" else DATAFEED_URL

    def tick_url(self, base_url: str, instrument: Instrument, hour: datetime, *, open_period: bool = False) -> str:
        if self.name == "api":
            return f"{base_url}/{jsonapi.tick_path(instrument.api_code, hour, open_period=open_period)}"
        return f"{base_url}/{bi5.datafeed_path(instrument.code, hour)}"

    def decode_ticks(
        self, data: bytes, *, hour_start_ns: int, instrument: Instrument, source: str, open_period: bool = False
    ) -> list[TickRecord]:
        if self.name == "api":
            return jsonapi.decode_ticks(data, hour_start_ns=hour_start_ns, source=source, whole_hour=not open_period)
        return bi5.decode_ticks(
            data, hour_start_ns=hour_start_ns, divisor=instrument.divisor, symbol=instrument.code, source=source
        )

    def candle_url(
        self,
        base_url: str,
        instrument: Instrument,
        period_start: datetime,
        *,
        step_s: int,
        side: Literal["BID", "ASK"],
        open_period: bool = False,
    ) -> str:
        if self.name == "api":
            path = jsonapi.candle_path(
                _API_CANDLES[step_s], instrument.api_code, side, period_start, open_period=open_period
            )
            return f"{base_url}/{path}"
        return candle_url(base_url, instrument.code, period_start, timeframe=_BI5_CANDLES[step_s], side=side)

    def decode_candles(
        self,
        data: bytes,
        *,
        period_start_ns: int,
        step_s: int,
        instrument: Instrument,
        source: str,
        open_period: bool = False,
    ) -> list[CandleRecord]:
        if self.name == "api":
            return jsonapi.decode_candles(
                data, period_start_ns=period_start_ns, step_s=step_s, source=source, whole_period=not open_period
            )
        return bi5.decode_candles(
            data, period_start_ns=period_start_ns, divisor=instrument.divisor, symbol=instrument.code, source=source
        )


def get_feed(name: str) -> Feed:
    """The feed called ``name`` (``api`` or ``bi5``); ConfigError naming the choices otherwise."""
    if name not in FEEDS:
        raise ConfigError(f"unknown Dukascopy feed {name!r}: expected one of {', '.join(FEEDS)}")
    return Feed(name)  # type: ignore[arg-type]
