"""Dukascopy, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from typing import Any

from ingesters.dukascopy.instruments import lookup
from pulse.venues import Resolved, Venue


def _resolve(text: str) -> Resolved:
    inst = lookup(text)
    asset = "fx" if inst.weekly_close is not None and len(inst.code) == 6 else "other"
    return Resolved(inst.symbol, inst.code, asset, inst.decimals, 2)


def _commands() -> dict[str, Any]:
    from ingesters.dukascopy import commands

    return commands.COMMANDS


VENUE = Venue(
    name="dukascopy",
    namespace="historical",
    channels=("quote", "candle"),
    default_channels=("quote",),
    live=False,
    resolve=_resolve,
    channel_topics={"quote": ("quote",), "candle": ("candle",)},
    settings_section="dukascopy",
    commands=_commands,
    description="Dukascopy historical tick and candle files (backfill)",
)
