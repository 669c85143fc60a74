"""OANDA's settings section (``[oanda]`` in pulse.toml, ``PULSE_OANDA__<KEY>`` in the environment): declared by
the venue itself and registered with it (``Venue.settings_model``), so the core settings never name a venue."""

from __future__ import annotations

import os
from typing import Any, Literal

import msgspec

from pulse.settings import PosFloat, Section


class OandaSettings(Section):
    """OANDA v20 pricing stream. The token is a secret: set it here, in ``token_file``, or ``$OANDA_TOKEN``."""

    account_id: str = ""
    token: str = ""  # secret
    token_file: str = ""
    environment: Literal["practice", "live"] = "practice"
    api_url: str = ""  # overrides the practice/live stream host (the local venue in tests and the demo)
    instruments: list[str] = msgspec.field(default_factory=lambda: ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD"])
    stale_after_s: PosFloat = 10.0  # no line (price or heartbeat) for this long → reconnect
    connect_timeout_s: PosFloat = 10.0
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    # "fx": sleep through OANDA's weekend close; "always": ignore market hours (a local venue streams 24/7)
    market_hours: Literal["fx", "always"] = "fx"


def oanda_token(settings: Any, environ: dict[str, str] | None = None) -> str:
    """The OANDA token in effect: ``oanda.token_file``'s content, else ``oanda.token``, else ``$OANDA_TOKEN``."""
    return settings.venue_secret("oanda", "token") or (os.environ if environ is None else environ).get(
        "OANDA_TOKEN", ""
    )
