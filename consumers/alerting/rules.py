"""Alert rule definitions: frozen msgspec structs, one per kind, validated on construction.

Every rule names one instrument (``venue`` + canonical ``symbol``) and carries the two anti-flapping knobs:

* ``cooldown_s`` — at most one alert per rule per cooldown (event time). A trigger inside the cooldown is
  *swallowed*: counted, not alerted, and the rule disarms as if it had fired (it must re-arm first).
* ``hysteresis`` — after firing, a rule is *disarmed* until the watched value has gone back past the threshold
  by this margin (in the threshold's own unit: price for ``price_cross``, basis points for ``spread``,
  ``divergence`` and ``ma_cross``, percentage points for ``pct_change``, z units for ``volume_spike``).
  A rule therefore fires on a *transition* into its condition, never on every tick while the condition holds.

Kinds (the ``kind`` tag; the CLI also accepts dashes, ``price-cross``):

============== =====================================================================================
price_cross    ``above`` or ``below`` a price level (exactly one); ``price`` = mid | bid | ask | last
pct_change     ``pct`` % move over ``window_s`` seconds (vs the price as of the window's start)
ma_cross       ``fast``/``slow`` moving averages (``ma`` = sma | ema, in samples) cross; samples are every
               tick, or the last price of each ``interval_s`` bucket
spread         (ask - bid) / mid wider than ``bps`` basis points
volume_spike   traded volume of the current ``interval_s`` bucket has z-score ≥ ``z`` against the previous
               ``buckets`` buckets (trades only)
stale_feed     no tick for ``silence_s`` seconds while the market should be trading (``calendar`` = auto |
               fx | crypto; auto: the venue's calendar — oanda → fx hours, alpaca → NYSE sessions, else 24/7)
divergence     |price(venue) - price(other_venue)| / mean > ``bps`` basis points, both prices younger than
               ``max_age_s`` relative to each other
============== =====================================================================================

Thresholds that are prices are :class:`~decimal.Decimal` (exact comparisons against exact venue prices);
statistics (percentages, z-scores, basis points) are floats.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

import msgspec

from pulse.calendars import ALWAYS
from pulse.errors import PulseError
from pulse.symbols import canonical
from pulse.venues import Venue, venues


def live_venues() -> dict[str, Venue]:
    """Venues whose live topics the alerting service can read (the venue registry's live ones)."""
    return {name: v for name, v in venues().items() if v.live}


PriceField = Literal["mid", "bid", "ask", "last"]
Direction = Literal["up", "down", "both"]


class RuleError(PulseError, ValueError):
    """A rule definition is invalid; the message names the field."""


class _Rule(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=True):
    venue: str
    symbol: str
    id: int = 0  # assigned by the store
    name: str = ""
    cooldown_s: float = 60.0
    hysteresis: float = 0.0
    enabled: bool = True

    #: kind-specific fields and a one-line help each (for the CLI)
    PARAMS: ClassVar[dict[str, str]] = {}

    @property
    def kind(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[attr-defined,no-any-return]

    @property
    def instrument(self) -> tuple[str, str]:
        return (self.venue, self.symbol)

    def instruments(self) -> list[tuple[str, str]]:
        """Every (venue, symbol) whose ticks this rule reads."""
        return [self.instrument]

    def channels(self) -> tuple[str, ...]:
        """The live channels this rule needs (``quote`` carries bid/ask; ``trade`` carries last and volume)."""
        return ("quote",)

    def __post_init__(self) -> None:
        if self.venue not in live_venues():
            raise RuleError(f"venue {self.venue!r}: expected one of {', '.join(live_venues())}")
        try:
            canon = canonical(self.symbol)
        except (PulseError, ValueError) as exc:
            raise RuleError(f"symbol {self.symbol!r}: {exc}") from exc
        if canon != self.symbol:
            raise RuleError(f"symbol {self.symbol!r}: use the canonical form {canon!r}")
        if not (0 <= self.cooldown_s <= 7 * 86400):
            raise RuleError(f"cooldown_s {self.cooldown_s}: must be between 0 and 604800 seconds")
        if self.hysteresis < 0:
            raise RuleError(f"hysteresis {self.hysteresis}: must be >= 0")
        if len(self.name) > 200:
            raise RuleError("name: at most 200 characters")


def _positive(name: str, value: float | Decimal) -> None:
    if not value > 0:
        raise RuleError(f"{name} {value}: must be > 0")


class PriceCross(_Rule, frozen=True, tag="price_cross"):
    above: Decimal | None = None
    below: Decimal | None = None
    price: PriceField = "mid"

    PARAMS: ClassVar[dict[str, str]] = {
        "above": "fire when the price crosses above this level",
        "below": "fire when the price crosses below this level",
        "price": "mid | bid | ask | last (default mid)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.above is None) == (self.below is None):
            raise RuleError("give exactly one of above / below")
        level = self.level
        if not level.is_finite() or level <= 0:
            raise RuleError(f"{'above' if self.above is not None else 'below'} {level}: must be a price > 0")

    @property
    def level(self) -> Decimal:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    def channels(self) -> tuple[str, ...]:
        return ("trade",) if self.price == "last" else ("quote",)


class PctChange(_Rule, frozen=True, tag="pct_change"):
    window_s: float
    pct: float
    direction: Direction = "both"
    price: PriceField = "mid"

    PARAMS: ClassVar[dict[str, str]] = {
        "window_s": "window length in seconds",
        "pct": "percent move that fires (> 0)",
        "direction": "up | down | both (default both)",
        "price": "mid | bid | ask | last (default mid)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("window_s", self.window_s)
        _positive("pct", self.pct)
        if self.hysteresis >= self.pct:
            raise RuleError(f"hysteresis {self.hysteresis}: must be below pct {self.pct}")

    def channels(self) -> tuple[str, ...]:
        return ("trade",) if self.price == "last" else ("quote",)


class MaCross(_Rule, frozen=True, tag="ma_cross"):
    fast: int
    slow: int
    ma: Literal["sma", "ema"] = "ema"
    interval_s: float = 0.0  # 0: every tick is a sample
    direction: Direction = "both"
    price: PriceField = "mid"

    PARAMS: ClassVar[dict[str, str]] = {
        "fast": "fast average length in samples",
        "slow": "slow average length in samples (> fast)",
        "ma": "sma | ema (default ema)",
        "interval_s": "sample the last price of each bucket of this many seconds (default 0: every tick)",
        "direction": "up (fast crosses above) | down | both (default both)",
        "price": "mid | bid | ask | last (default mid)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fast < 1 or self.slow > 100_000:
            raise RuleError(f"fast {self.fast} / slow {self.slow}: lengths must be 1..100000")
        if self.fast >= self.slow:
            raise RuleError(f"fast {self.fast}: must be shorter than slow {self.slow}")
        if self.interval_s < 0:
            raise RuleError(f"interval_s {self.interval_s}: must be >= 0")

    def channels(self) -> tuple[str, ...]:
        return ("trade",) if self.price == "last" else ("quote",)


class Spread(_Rule, frozen=True, tag="spread"):
    bps: float

    PARAMS: ClassVar[dict[str, str]] = {"bps": "fire when (ask - bid) / mid is wider than this many basis points"}

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("bps", self.bps)
        if self.hysteresis >= self.bps:
            raise RuleError(f"hysteresis {self.hysteresis}: must be below bps {self.bps}")


class VolumeSpike(_Rule, frozen=True, tag="volume_spike"):
    z: float = 3.0
    interval_s: float = 60.0
    buckets: int = 20
    min_volume: Decimal = Decimal(0)

    PARAMS: ClassVar[dict[str, str]] = {
        "z": "z-score of the current bucket's volume that fires (default 3)",
        "interval_s": "bucket length in seconds (default 60)",
        "buckets": "how many previous buckets make the baseline (default 20, >= 2)",
        "min_volume": "ignore buckets with less volume than this (default 0)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("z", self.z)
        _positive("interval_s", self.interval_s)
        if not 2 <= self.buckets <= 10_000:
            raise RuleError(f"buckets {self.buckets}: must be 2..10000")
        if self.min_volume < 0:
            raise RuleError(f"min_volume {self.min_volume}: must be >= 0")
        if self.hysteresis >= self.z:
            raise RuleError(f"hysteresis {self.hysteresis}: must be below z {self.z}")

    def channels(self) -> tuple[str, ...]:
        return ("trade",)


class StaleFeed(_Rule, frozen=True, tag="stale_feed"):
    silence_s: float
    calendar: Literal["auto", "fx", "crypto"] = "auto"

    PARAMS: ClassVar[dict[str, str]] = {
        "silence_s": "fire after this many seconds without a tick while the market trades",
        "calendar": "auto (the venue's market hours: fx hours for an FX venue, NYSE sessions for US equities, "
        "else 24/7) | fx | crypto (24/7)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("silence_s", self.silence_s)

    @property
    def fx_hours(self) -> bool:
        return self.calendar == "fx" or (self.calendar == "auto" and live_venues()[self.venue].calendar is not ALWAYS)

    def channels(self) -> tuple[str, ...]:
        return ("quote", "trade") if "trade" in live_venues()[self.venue].channels else ("quote",)


class Divergence(_Rule, frozen=True, tag="divergence"):
    other_venue: str
    bps: float
    max_age_s: float = 5.0
    price: PriceField = "mid"

    PARAMS: ClassVar[dict[str, str]] = {
        "other_venue": "the venue to compare with (same symbol)",
        "bps": "fire when the prices differ by more than this many basis points of their mean",
        "max_age_s": "compare only prices at most this many seconds apart (default 5)",
        "price": "mid | bid | ask | last (default mid)",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.other_venue not in live_venues():
            raise RuleError(f"other_venue {self.other_venue!r}: expected one of {', '.join(live_venues())}")
        if self.other_venue == self.venue:
            raise RuleError("other_venue: must differ from venue")
        _positive("bps", self.bps)
        _positive("max_age_s", self.max_age_s)
        if self.hysteresis >= self.bps:
            raise RuleError(f"hysteresis {self.hysteresis}: must be below bps {self.bps}")

    def instruments(self) -> list[tuple[str, str]]:
        return [(self.venue, self.symbol), (self.other_venue, self.symbol)]

    def channels(self) -> tuple[str, ...]:
        return ("trade",) if self.price == "last" else ("quote",)


Rule = PriceCross | PctChange | MaCross | Spread | VolumeSpike | StaleFeed | Divergence

RULE_TYPES: dict[str, type[_Rule]] = {
    t.__struct_config__.tag: t  # type: ignore[attr-defined]
    for t in (PriceCross, PctChange, MaCross, Spread, VolumeSpike, StaleFeed, Divergence)
}
COMMON_FIELDS = ("venue", "symbol", "name", "cooldown_s", "hysteresis", "enabled")


def kind_name(text: str) -> str:
    """``price-cross`` / ``PRICE_CROSS`` → ``price_cross``; unknown kinds are refused naming the valid ones."""
    kind = text.strip().lower().replace("-", "_")
    if kind not in RULE_TYPES:
        kinds = ", ".join(k.replace("_", "-") for k in RULE_TYPES)
        raise RuleError(f"unknown rule kind {text!r}: expected one of {kinds}")
    return kind


def make_rule(kind: str, fields: dict[str, Any]) -> Rule:
    """Build and validate a rule of ``kind`` from loosely typed values (CLI strings, JSON); errors name the field."""
    k = kind_name(kind)
    cls = RULE_TYPES[k]
    allowed = set(COMMON_FIELDS) | set(cls.PARAMS) | {"id"}
    fields = dict(fields)
    if isinstance(fields.get("symbol"), str):
        try:
            fields["symbol"] = canonical(fields["symbol"])
        except PulseError as exc:
            raise RuleError(f"{k}: symbol: {exc}") from exc
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise RuleError(
            f"{k}: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed - {'id'}))}"
        )
    try:
        return msgspec.convert({"kind": k, **fields}, Rule, strict=False)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        raise RuleError(f"{k}: {str(exc).replace('`$.', '`').replace('$.', '')}") from exc
    except (InvalidOperation, ValueError) as exc:
        raise RuleError(f"{k}: {exc}") from exc


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """JSON-ready (decimals as strings)."""
    return msgspec.to_builtins(rule)  # type: ignore[no-any-return]


def rule_params(rule: Rule) -> dict[str, Any]:
    """What the store keeps besides the indexed columns (everything but id, kind, venue, symbol, name)."""
    d = rule_to_dict(rule)
    for key in ("id", "kind", "venue", "symbol", "name"):
        d.pop(key, None)
    return d


def describe(rule: Rule) -> str:
    """One line for ``pulse alerts list``."""
    params = rule_params(rule)
    params.pop("enabled", None)
    body = " ".join(f"{k}={v}" for k, v in params.items())
    return f"#{rule.id} {rule.kind} {rule.venue}:{rule.symbol} {body}" + (f" ({rule.name})" if rule.name else "")
