"""US equity market hours: NYSE sessions (holidays, early closes) from the ``exchange-calendars`` library, cached.

``exchange_calendars``' ``XNYS`` calendar knows the NYSE's regular sessions — 09:30 to 16:00 New York time, 13:00 on
early-close days (the day after Thanksgiving, Christmas Eve, …), none on holidays (its rules plus the ad-hoc
closures of the past). Alpaca's stream follows the US exchanges, so this is the venue's calendar.

**Cost.** Importing the library (pandas, numpy) takes 3-9 s on the 2-core reference machine and building the XNYS
calendar for three years another ~0.8 s — far too much for ``pulse status`` or an alert rule. So the library is
asked once and its answer — each session's open and close as UTC seconds, for the previous, current and next
year — is kept in a small JSON file (``$PULSE_CACHE_DIR`` or ``~/.cache``, ``pulse/calendars/xnys.json``, ~30 KB).
Later processes read that file (about a millisecond) and never import the library, until an instant outside the
cached years is asked, which rebuilds it with the wider range. :func:`UsEquityCalendar.preload` does the work up
front (the ingester calls it before connecting).

Hours (``hours``):
* ``regular`` — each session's open to its close (``market_closed`` outside);
* ``extended`` — 04:00 to 20:00 New York time on session days, to 17:00 after an early close (the pre- and
  post-market Alpaca's feeds carry).
Intervals are half-open: open at exactly the opening instant, closed at exactly the closing one.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pulse.errors import ConfigError
from pulse.log import get_logger

log = get_logger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
CACHE_VERSION = 1
EXCHANGE = "XNYS"
_EXT_OPEN, _EXT_CLOSE, _EXT_CLOSE_EARLY = time(4, 0), time(20, 0), time(17, 0)
_REGULAR_CLOSE = time(16, 0)

Hours = Literal["regular", "extended"]


def cache_dir() -> Path:
    base = os.environ.get("PULSE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pulse" / "calendars"


def sessions_from_library(first_year: int, last_year: int) -> list[tuple[str, int, int]]:
    """(session date, open, close) for every XNYS session of the years, opens and closes as UTC epoch seconds.
    Imports exchange_calendars (slow: see the module docstring)."""
    try:
        import exchange_calendars as xc
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ConfigError(f"US market hours need the exchange-calendars package: {exc}") from exc
    with warnings.catch_warnings():  # the library's own pandas deprecation warnings are not the user's business
        warnings.simplefilter("ignore")
        cal = xc.get_calendar(EXCHANGE, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
        sched = cal.schedule
    out = []
    for day, op, cl in zip(sched.index, sched["open"], sched["close"], strict=True):
        out.append((day.date().isoformat(), int(op.timestamp()), int(cl.timestamp())))
    return out


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exchange-calendars")
    except PackageNotFoundError:  # pragma: no cover
        return "?"


@dataclass
class _Table:
    first_year: int
    last_year: int
    days: list[str]
    opens: list[int]  # UTC seconds, ascending
    closes: list[int]


@dataclass
class UsEquityCalendar:
    """The NYSE's sessions as a :class:`pulse.calendars.Calendar` (``is_open``), plus ``next_open``,
    ``next_close`` and ``last_open`` for sleeping until the open and judging silence."""

    hours: Hours = "regular"
    cache_path: Path | None = None  # None: cache_dir()/xnys.json
    _table: _Table | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    library_loads: int = field(default=0, init=False)  # how often this object asked exchange_calendars

    # -- the Calendar protocol and friends ---------------------------------------------------------------
    def is_open(self, ts: datetime) -> bool:
        s = _seconds(ts)
        opens, closes = self._intervals(ts)
        i = bisect.bisect_right(opens, s) - 1
        return i >= 0 and s < closes[i]

    def next_open(self, ts: datetime) -> datetime:
        """The first open strictly after ``ts`` (UTC)."""
        s = _seconds(ts)
        for probe in (ts, ts + timedelta(days=366)):
            opens, _ = self._intervals(probe)
            i = bisect.bisect_right(opens, s)
            if i < len(opens):
                return datetime.fromtimestamp(opens[i], UTC)
        raise ValueError(f"no NYSE session after {ts.isoformat()} in the calendar")  # pragma: no cover

    def next_close(self, ts: datetime) -> datetime:
        """The first close strictly after ``ts`` (UTC): the current session's when open."""
        s = _seconds(ts)
        for probe in (ts, ts + timedelta(days=366)):
            _, closes = self._intervals(probe)
            i = bisect.bisect_right(closes, s)
            if i < len(closes):
                return datetime.fromtimestamp(closes[i], UTC)
        raise ValueError(f"no NYSE session after {ts.isoformat()} in the calendar")  # pragma: no cover

    def last_open(self, ts: datetime) -> datetime | None:
        """The latest open at or before ``ts`` (UTC), or None before the calendar's first session."""
        s = _seconds(ts)
        opens, _ = self._intervals(ts)
        i = bisect.bisect_right(opens, s) - 1
        return datetime.fromtimestamp(opens[i], UTC) if i >= 0 else None

    def session_days(self, start: date, end: date) -> list[date]:
        """The session dates in ``[start, end]`` (what the library calls sessions)."""
        t = self._load(datetime.combine(start, time(12), tzinfo=UTC))
        if end.year > t.last_year:
            t = self._load(datetime.combine(end, time(12), tzinfo=UTC))
        return [date.fromisoformat(d) for d in t.days if start.isoformat() <= d <= end.isoformat()]

    def preload(self, ts: datetime | None = None) -> None:
        """Load (or build) the session table covering ``ts`` (default: now) before it is needed."""
        self._load(ts or datetime.now(UTC))

    # -- the table ---------------------------------------------------------------------------------------
    def _intervals(self, ts: datetime) -> tuple[list[int], list[int]]:
        t = self._load(ts)
        if self.hours == "regular":
            return t.opens, t.closes
        return _extended(t)

    def _load(self, ts: datetime) -> _Table:
        year = ts.astimezone(UTC).year
        t = self._table
        if t is not None and t.first_year <= year - 1 and year + 1 <= t.last_year:
            return t
        with self._lock:
            t = self._table
            if t is not None and t.first_year <= year - 1 and year + 1 <= t.last_year:
                return t
            first, last = year - 1, year + 1
            if t is not None:
                first, last = min(first, t.first_year), max(last, t.last_year)
            t = self._read_cache(first, last) or self._build(first, last)
            self._table = t
            self.__dict__.pop("_ext", None)
            return t

    @property
    def path(self) -> Path:
        return self.cache_path or cache_dir() / "xnys.json"

    def _read_cache(self, first: int, last: int) -> _Table | None:
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("version") != CACHE_VERSION or doc.get("exchange") != EXCHANGE:
                return None
            if not (doc["first_year"] <= first and last <= doc["last_year"]):
                return None
            rows = doc["sessions"]
            return _Table(doc["first_year"], doc["last_year"], [r[0] for r in rows], [int(r[1]) for r in rows],
                          [int(r[2]) for r in rows])  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None  # missing, unreadable or damaged: rebuilt from the library

    def _build(self, first: int, last: int) -> _Table:
        log.info("building the NYSE session table", library="exchange-calendars", first_year=first, last_year=last)
        rows = sessions_from_library(first, last)
        self.library_loads += 1
        doc = {"version": CACHE_VERSION, "exchange": EXCHANGE, "library": _library_version(), "first_year": first,
               "last_year": last, "sessions": rows}  # fmt: skip
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only home: keep the table in memory only
            log.warning("cannot cache the NYSE session table", path=str(self.path), error=str(exc))
        return _Table(first, last, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


_EXT_CACHE: dict[int, tuple[list[int], list[int]]] = {}


def _extended(t: _Table) -> tuple[list[int], list[int]]:
    key = id(t)
    hit = _EXT_CACHE.get(key)
    if hit is not None and len(hit[0]) == len(t.days):
        return hit
    opens, closes = [], []
    for day, close in zip(t.days, t.closes, strict=True):
        d = date.fromisoformat(day)
        early = datetime.fromtimestamp(close, UTC).astimezone(NEW_YORK).time() < _REGULAR_CLOSE
        opens.append(int(datetime.combine(d, _EXT_OPEN, tzinfo=NEW_YORK).timestamp()))
        end = _EXT_CLOSE_EARLY if early else _EXT_CLOSE
        closes.append(int(datetime.combine(d, end, tzinfo=NEW_YORK).timestamp()))
    _EXT_CACHE.clear()
    _EXT_CACHE[key] = (opens, closes)
    return opens, closes


def _seconds(ts: datetime) -> float:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"market-hours functions need an aware datetime, got naive {ts.isoformat()}")
    return ts.timestamp()


#: the venue's calendar (regular hours), shared by everything that asks ``pulse.venues`` about Alpaca
US_EQUITIES = UsEquityCalendar("regular")
