"""The venue seam: a venue is one :class:`pulse.venues.Venue` value plus one registration.

A fake venue defined and registered in this file (no other file edited) shows up in ``pulse ingest`` and
``pulse simulate``, its symbol rules and channels reach the control plane, its market calendar reaches
``pulse status``'s tick expectations, and ``pulse demo`` plans it in — all through the registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points

import click
import pytest
from click.testing import CliRunner

from app.demo import _plans
from cli import cli
from control_plane.symbols import plan_instrument
from pulse import venues
from pulse.errors import ConfigError, SymbolError
from pulse.venues import DemoPlan, Resolved, Venue, expects_ticks, instrument_topics

_SYMBOL = re.compile(r"^([A-Z]{3})[/_-]?([A-Z]{3})$")


def _resolve(text: str) -> Resolved:
    m = _SYMBOL.match(text.strip().upper())
    if m is None:
        raise SymbolError(f"invalid Fakex symbol {text!r}: expected AAA/BBB")
    return Resolved(f"{m[1]}/{m[2]}", f"{m[1]}{m[2]}", "fx", 4, 2)


class _NeverOpen:
    def is_open(self, ts: datetime) -> bool:
        return False


@click.command("fakex")
@click.option("--symbols", required=True)
def _ingest(symbols: str) -> None:
    """Fakex: a venue that exists only in this test."""
    click.echo(f"fakex ingesting {symbols}")


@click.command("fakex")
@click.option("--port", type=int, default=1)
def _simulate(port: int) -> None:
    """A local Fakex venue."""
    click.echo(f"fakex venue on {port}")


FAKE = Venue(
    name="fakex",
    namespace="fx",
    channels=("quote", "trade"),
    default_channels=("quote",),
    live=True,
    resolve=_resolve,
    channel_topics={"quote": ("quote",), "trade": ("trade", "quote")},
    calendar=_NeverOpen(),
    settings_section="fakex",
    service="ingest-fakex",
    commands=lambda: {"ingest": _ingest, "simulate": _simulate},
    demo=DemoPlan(
        symbols=("AAA/BBB",),
        simulate=lambda port, rate, syms, faults: ["simulate", "fakex", "--port", str(port)],
        ingest=lambda port, syms: ["ingest", "fakex", "--symbols", ",".join(syms)],
        group="fx",
    ),
)


@pytest.fixture
def fake() -> Iterator[Venue]:
    venues.register(FAKE)
    try:
        yield FAKE
    finally:
        venues.unregister(FAKE.name)


def test_the_shipped_venues_come_from_the_entry_points() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group=venues.ENTRY_POINT_GROUP)}
    assert declared == {
        "kraken": "ingesters.kraken.venue:VENUE",
        "oanda": "ingesters.oanda.venue:VENUE",
        "dukascopy": "ingesters.dukascopy.venue:VENUE",
    }
    assert set(declared) <= set(venues.venues())
    assert (
        venues.get("Kraken").namespace == "crypto"
        and venues.get("oanda").calendar.is_open(
            datetime(2024, 1, 6, 12, tzinfo=UTC)  # a Saturday: FX is closed
        )
        is False
    )


def test_a_registered_venue_appears_in_the_cli(fake: Venue) -> None:
    runner = CliRunner()
    for group in ("ingest", "simulate"):
        res = runner.invoke(cli, [group, "--help"])
        assert res.exit_code == 0 and "fakex" in res.output, res.output
        assert "kraken" in res.output  # the shipped venues are still there
    assert "fakex" not in runner.invoke(cli, ["backfill", "--help"]).output  # it offers no backfill
    res = runner.invoke(cli, ["ingest", "fakex", "--symbols", "AAA/BBB"])
    assert res.exit_code == 0 and res.output.strip() == "fakex ingesting AAA/BBB"
    res = runner.invoke(cli, ["simulate", "fakex", "--port", "7"])
    assert res.exit_code == 0 and res.output.strip() == "fakex venue on 7"


def test_an_unregistered_venue_is_refused_by_name() -> None:
    res = CliRunner().invoke(cli, ["ingest", "fakex"])
    assert res.exit_code == 2 and "No such command 'fakex'" in res.output
    with pytest.raises(SymbolError, match=r"unknown venue 'fakex': expected one of dukascopy, kraken, oanda"):
        venues.get("fakex")


def test_its_symbol_rules_and_channels_reach_the_control_plane(fake: Venue) -> None:
    v, inst = plan_instrument("fakex", "aaa_bbb", ["trade"])
    assert v is fake
    assert (inst.venue, inst.symbol, inst.venue_symbol, inst.namespace, inst.price_precision) == (
        "fakex", "AAA/BBB", "AAABBB", "fx", 4,
    )  # fmt: skip
    assert instrument_topics(inst, "market-data") == [
        "persistent://market-data/fx/fakex.AAA-BBB.trade",
        "persistent://market-data/fx/fakex.AAA-BBB.quote",
        "persistent://market-data/fx/fakex.AAA-BBB.status",
    ]
    assert fake.publishes("quote") and fake.publishes("trade") and not fake.publishes("book")
    assert venues.get("kraken").publishes("quote") and not venues.get("oanda").publishes("trade")
    with pytest.raises(SymbolError, match="fakex has no channel book: choose from quote, trade"):
        plan_instrument("fakex", "AAA/BBB", ["book"])
    with pytest.raises(SymbolError, match="invalid Fakex symbol 'AB/C;'"):
        plan_instrument("fakex", "AB/C;")


def test_its_calendar_decides_whether_ticks_are_expected(fake: Venue) -> None:
    now = datetime(2024, 1, 3, 12, tzinfo=UTC)  # a Wednesday: every shipped live venue trades
    assert expects_ticks("kraken", now) and expects_ticks("oanda", now)
    assert not expects_ticks("fakex", now)  # its calendar says closed
    assert not expects_ticks("dukascopy", now)  # backfill only


def test_the_demo_plans_it_in_through_the_registry(fake: Venue) -> None:
    plans = {v.name: syms for v, _, syms in _plans(None, fx=True, backfill=False)}
    assert plans == {"kraken": ["BTC/USD", "ETH/USD", "SOL/USD"], "fakex": ["AAA/BBB"], "oanda": [
        "EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD"]}  # fmt: skip
    assert list(plans) == ["kraken", "fakex", "oanda"]  # the main venue first, then the fx group by name
    assert set(v.name for v, _, _ in _plans(["XBT/USD"], fx=False, backfill=False)) == {"kraken"}


def test_a_second_venue_with_a_taken_name_is_refused(fake: Venue) -> None:
    with pytest.raises(ConfigError, match="a venue named 'fakex' is already registered"):
        venues.register(Venue(**{**FAKE.__dict__, "description": "another"}))
