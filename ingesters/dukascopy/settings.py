"""Dukascopy's settings section (``[dukascopy]`` in pulse.toml, ``PULSE_DUKASCOPY__<KEY>`` in the environment):
declared by the venue itself and registered with it (``Venue.settings_model``), so the core settings never name
a venue."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from pulse.settings import Section


class DukascopySettings(Section):
    # api: the JSON data API Dukascopy moved to in July 2026; bi5: the .bi5 datafeed layout (mirrors, archives)
    feed: Literal["api", "bi5"] = "api"
    base_url: str = ""  # empty: the feed's own (https://jetta.dukascopy.com/v1 or …/datafeed)
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 8
    checkpoint_dir: str = ""  # empty: <runtime.home>/checkpoints/dukascopy
