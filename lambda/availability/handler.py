"""Which Dukascopy hours are available: an AWS Lambda function, Python standard library only.

Invoked by the EventBridge Scheduler every hour (``template.yaml``), directly (``lambda:InvokeFunction``, as
the poller does with boto3) or over its function URL (payload format 2.0: ``GET /`` or ``GET /health``). For
each instrument it reports the latest finished UTC hour whose tick file Dukascopy serves, whether the market
is open now and was open in that hour, and the time of the check. All instruments usually publish together,
so it probes one baseline instrument hour by hour backwards from the last finished hour, then confirms the
others at the baseline's hour (in parallel), walking back only for those that lack it.

Event (every key optional; the configuration comes from the environment, ``PULSE_AVAILABILITY_*``)::

    {"instruments": ["EUR/USD", "GBPUSD"], "baseline": "EUR/USD", "feed": "api" | "bi5",
     "lookback_hours": 24, "timeout_s": 3, "at": "2026-07-13T12:10:00Z", "base_url": "https://…"}

``at`` checks as of an earlier time (never later than now). ``base_url`` is accepted from a direct invocation
only, never over the function URL (no one can make the function fetch an address of their choosing). Both
feeds: ``api`` (``{root}/ticks/EUR-USD/2026/7/13/12``, an hour with ticks has a non-empty ``times`` column)
and ``bi5`` (``{root}/EURUSD/2026/06/13/12h_ticks.bi5``, non-empty body).

Answers are JSON. A malformed event gets ``statusCode`` 400 and an ``error`` naming what is wrong, an
unexpected failure 500 and ``internal error`` (details only in the function's log), never a stack trace.
One instrument's failure (timeouts, HTTP errors) is reported in its entry and does not fail the others.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger()
log.setLevel(logging.INFO)

API_URL = "https://jetta.dukascopy.com/v1"
DATAFEED_URL = "https://datafeed.dukascopy.com/datafeed"
DEFAULT_INSTRUMENTS = ("EUR/USD",)
USER_AGENT = "pulse-availability/1.0"
_SYMBOL = re.compile(r"^([A-Z0-9]{2,12}(?:\.[A-Z]{3})?)[/-]([A-Z]{3})$")
_CODE6 = re.compile(r"^([A-Z]{3})([A-Z]{3})$")
_CRYPTO = frozenset({"BTC", "ETH", "LTC", "XRP", "BCH", "SOL", "ADA", "DOT"})
_KEYS = frozenset({"instruments", "baseline", "feed", "lookback_hours", "timeout_s", "at", "base_url"})
_MAX_INSTRUMENTS = 50
_MARGIN_S = 2.0  # stop probing when less than this is left of the invocation's time


class BadRequest(ValueError):
    """The event cannot be answered as asked; the message says why (it becomes the 400 body)."""


@dataclass(frozen=True)
class Instrument:
    symbol: str  # EUR/USD
    api_code: str  # EUR-USD
    code: str  # EURUSD (the .bi5 path)
    crypto: bool


@dataclass(frozen=True)
class Request:
    instruments: tuple[Instrument, ...]
    baseline: Instrument
    feed: str
    base_url: str
    lookback_hours: int
    timeout_s: float
    now: datetime


def parse_instrument(name: Any) -> Instrument:
    """``EUR/USD``, ``EUR-USD`` or ``EURUSD`` (six letters); ``USA500.IDX/USD``. Anything else is refused, so no
    name can put characters into a URL."""
    if not isinstance(name, str):
        raise BadRequest(f"instrument {name!r} is not a string")
    text = name.strip().upper()
    m = _SYMBOL.match(text) or _CODE6.match(text)
    if not m:
        raise BadRequest(f"instrument {name!r} is not BASE/QUOTE (e.g. EUR/USD, USA500.IDX/USD) or EURUSD")
    base, quote = m.group(1), m.group(2)
    return Instrument(f"{base}/{quote}", f"{base}-{quote}", (base + quote).replace(".", ""), base in _CRYPTO)


# -- market hours: Friday 17:00 to Sunday 17:00 New York time (DST by the US rule, no tz database needed) ----


def _nth_sunday(year: int, month: int, n: int) -> datetime:
    first = datetime(year, month, 1, tzinfo=UTC)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def new_york_offset(t: datetime) -> timedelta:
    """UTC offset of New York at ``t``: EDT (-4 h) from the second Sunday of March 02:00 local to the first
    Sunday of November 02:00 local, EST (-5 h) otherwise."""
    start = _nth_sunday(t.year, 3, 2) + timedelta(hours=7)  # 02:00 EST = 07:00 UTC
    end = _nth_sunday(t.year, 11, 1) + timedelta(hours=6)  # 02:00 EDT = 06:00 UTC
    return timedelta(hours=-4) if start <= t < end else timedelta(hours=-5)


def market_open(inst: Instrument, t: datetime) -> bool:
    """Crypto trades always; the rest follows the FX week (closed Friday 17:00 to Sunday 17:00 New York)."""
    if inst.crypto:
        return True
    local = t + new_york_offset(t)
    day, minutes = local.weekday(), local.hour * 60 + local.minute
    if day == 5:  # Saturday
        return False
    if day == 4:  # Friday
        return minutes < 17 * 60
    if day == 6:  # Sunday
        return minutes >= 17 * 60
    return True


def hour_had_market(inst: Instrument, hour: datetime) -> bool:
    """True when the market was open at any time in the hour (checked each quarter hour)."""
    return any(market_open(inst, hour + timedelta(minutes=m)) for m in (0, 15, 30, 45, 59))


# -- probing -----------------------------------------------------------------------------------------------


def hour_url(req: Request, inst: Instrument, hour: datetime) -> str:
    if req.feed == "api":
        return f"{req.base_url}/ticks/{inst.api_code}/{hour.year}/{hour.month}/{hour.day}/{hour.hour}"
    return f"{req.base_url}/{inst.code}/{hour.year:04d}/{hour.month - 1:02d}/{hour.day:02d}/{hour.hour:02d}h_ticks.bi5"


def has_ticks(req: Request, inst: Instrument, hour: datetime) -> bool:
    """GET the hour's file: True when it holds ticks, False for 404 or no ticks. Raises OSError (timeouts,
    connection errors, other HTTP statuses) and ValueError (an answer that is not the feed's format)."""
    url = hour_url(req, inst, hour)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=req.timeout_s) as resp:  # http(s) only: the URL is checked
            body = resp.read(32 * 1024 * 1024)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise OSError(f"HTTP {exc.code} from {url}") from None
    if req.feed == "bi5":
        return len(body) > 0
    if not body:
        return False
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("times"), list):
        raise ValueError(f"{url} did not answer with the data API's tick format")
    return len(doc["times"]) > 0


class Budget:
    """The invocation's time: probes stop when less than _MARGIN_S remains."""

    def __init__(self, context: Any) -> None:
        getter = getattr(context, "get_remaining_time_in_millis", None)
        remaining = getter() / 1000 if callable(getter) else 25.0
        self.deadline = time.monotonic() + remaining - _MARGIN_S

    def left(self) -> bool:
        return time.monotonic() < self.deadline


def walk_back(req: Request, inst: Instrument, first: datetime, budget: Budget) -> dict[str, Any]:
    """Probe ``first`` and earlier hours (skipping closed ones) until one has ticks."""
    probes, errors = 0, []
    hour = first
    for _ in range(req.lookback_hours):
        if not budget.left():
            errors.append("out of time")
            break
        if hour_had_market(inst, hour):
            probes += 1
            try:
                if has_ticks(req, inst, hour):
                    return {"latest_hour": hour, "probes": probes, "error": None}
            except (OSError, ValueError) as exc:
                errors.append(f"{hour:%Y-%m-%dT%H}: {exc}")
                if len(errors) >= 3:
                    break
        hour -= timedelta(hours=1)
    error = "; ".join(errors) if errors else f"no hour with ticks in the last {req.lookback_hours} hours"
    return {"latest_hour": None, "probes": probes, "error": error}


def check(req: Request, budget: Budget) -> dict[str, Any]:
    """The report: baseline first, then the others at the baseline's hour."""
    last_finished = req.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    results: dict[str, dict[str, Any]] = {req.baseline.symbol: walk_back(req, req.baseline, last_finished, budget)}
    anchor = results[req.baseline.symbol]["latest_hour"]

    def confirm(inst: Instrument) -> dict[str, Any]:
        if anchor is None:
            return walk_back(req, inst, last_finished, budget)
        try:
            if has_ticks(req, inst, anchor):
                return {"latest_hour": anchor, "probes": 1, "error": None}
        except (OSError, ValueError) as exc:
            log.warning("confirming %s at %s failed: %s", inst.symbol, anchor, exc)
        found = walk_back(req, inst, anchor - timedelta(hours=1), budget)
        found["probes"] += 1
        return found

    others = [i for i in req.instruments if i != req.baseline]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(others)))) as pool:
        for inst, found in zip(others, pool.map(confirm, others), strict=True):
            results[inst.symbol] = found
    report = {}
    for inst in req.instruments:
        r = results[inst.symbol]
        hour = r["latest_hour"]
        report[inst.symbol] = {
            "latest_hour": hour.strftime("%Y-%m-%dT%H:00:00Z") if hour else None,
            "market_open": market_open(inst, req.now),
            "latest_hour_market_open": hour_had_market(inst, hour) if hour else None,
            "probes": r["probes"],
            "error": r["error"],
        }
    return {
        "ok": all(v["error"] is None for v in report.values()),
        "checked_at": req.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feed": req.feed,
        "baseline": req.baseline.symbol,
        "instruments": report,
    }


# -- the event ---------------------------------------------------------------------------------------------


def _env_list(name: str, default: tuple[str, ...]) -> list[str]:
    raw = os.environ.get(name, "")
    return [x.strip() for x in raw.split(",") if x.strip()] or list(default)


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}")
    try:
        n = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}") from None
    if not lo <= n <= hi:
        raise BadRequest(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return n


def _base_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(
        r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~\-/]*)?$", value
    ):
        raise BadRequest(f"base_url must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def parse_request(params: dict[str, Any], *, trusted: bool, now: datetime) -> Request:
    """Validate the event (or the function URL's query) against the environment's configuration."""
    unknown = sorted(set(params) - _KEYS)
    if unknown:
        raise BadRequest(f"unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_KEYS))}")
    names = params.get("instruments", _env_list("PULSE_AVAILABILITY_INSTRUMENTS", DEFAULT_INSTRUMENTS))
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not isinstance(names, list) or not names or len(names) > _MAX_INSTRUMENTS:
        raise BadRequest(f"instruments must be a non-empty list of at most {_MAX_INSTRUMENTS} names")
    instruments = tuple(dict.fromkeys(parse_instrument(n) for n in names))
    baseline = parse_instrument(params.get("baseline", os.environ.get("PULSE_AVAILABILITY_BASELINE") or names[0]))
    if baseline not in instruments:
        raise BadRequest(f"baseline {baseline.symbol} is not one of the instruments")
    feed = params.get("feed", os.environ.get("PULSE_AVAILABILITY_FEED", "api"))
    if feed not in ("api", "bi5"):
        raise BadRequest(f"feed must be 'api' or 'bi5', got {feed!r}")
    if "base_url" in params and not trusted:
        raise BadRequest("base_url can only be set by a direct invocation, not over the function URL")
    configured = os.environ.get("PULSE_AVAILABILITY_BASE_URL") or (API_URL if feed == "api" else DATAFEED_URL)
    base_url = _base_url(params.get("base_url", configured))
    lookback = int(_number(params.get("lookback_hours", os.environ.get("PULSE_AVAILABILITY_LOOKBACK_HOURS", 72)),
                           "lookback_hours", 1, 240))  # fmt: skip
    timeout_s = _number(
        params.get("timeout_s", os.environ.get("PULSE_AVAILABILITY_TIMEOUT_S", 3)), "timeout_s", 0.1, 10
    )
    at = params.get("at")
    if at is not None:
        try:
            when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"at must be an ISO 8601 time such as 2026-07-13T12:10:00Z, got {at!r}") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        if when > now:
            raise BadRequest(f"at {at!r} is in the future")
        now = when
    return Request(instruments, baseline, feed, base_url, lookback, timeout_s, now)


def _http(status: int, doc: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(doc)}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The entry point (``handler.lambda_handler``)."""
    now = datetime.now(UTC)
    is_url = isinstance(event, dict) and isinstance(event.get("requestContext"), dict) and "rawPath" in event
    try:
        if is_url:
            method = (event["requestContext"].get("http") or {}).get("method", "GET")
            path = event.get("rawPath") or "/"
            if path.rstrip("/") == "/health":
                return _http(200, {"status": "ok", "checked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
            if path not in ("/", "/availability"):
                return _http(404, {"error": f"no such path {path[:64]!r}; use / or /health"})
            if method not in ("GET", "HEAD"):
                return _http(405, {"error": f"method {method[:10]} not allowed; use GET"})
            params = dict(event.get("queryStringParameters") or {})
            return _http(200, check(parse_request(params, trusted=False, now=now), Budget(context)))
        if event is None:
            event = {}
        if not isinstance(event, dict):
            raise BadRequest(f"the event must be a JSON object, got {type(event).__name__}")
        return check(parse_request(event, trusted=True, now=now), Budget(context))
    except BadRequest as exc:
        log.info("bad request: %s", exc)
        return _http(400, {"error": str(exc)}) if is_url else {"ok": False, "statusCode": 400, "error": str(exc)}
    except Exception:
        log.exception("availability check failed")
        body = {"error": "internal error; see the function's log"}
        return _http(500, body) if is_url else {"ok": False, "statusCode": 500, **body}
