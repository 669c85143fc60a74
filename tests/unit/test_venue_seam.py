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
from pathlib import Path
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from app.demo import _plans
from cli import cli
from control_plane.symbols import plan_instrument
from pulse import venues
from pulse.errors import ConfigError, SymbolError
from pulse.settings import Section, load_settings
from pulse.venues import DemoPlan, Resolved, Venue, expects_ticks, instrument_topics

_SYMBOL = re.compile(r"^([A-Z]{3})[/_-]?([A-Z]{3})$")


def _resolve(text: str) -> Resolved:
    m = _SYMBOL.match(text.strip().upper())
    if m is None:
        raise SymbolError(f"invalid Fakex symbol {text!r}: expected AAA/BBB")
    return Resolved(f"{m[1]}/{m[2]}", f"{m[1]}{m[2]}", "fx", 4, 2)


class FakexSettings(Section):
    url: str = "wss://fakex.invalid/ws"
    depth: Literal[5, 10] = 5
    api_key: str = ""  # a secret
    api_key_file: str = ""


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
    settings_model=FakexSettings,
    secret_settings=("api_key",),
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
        "binance": "ingesters.binance.venue:VENUE",
        "coinbase": "ingesters.coinbase.venue:VENUE",
        "alpaca": "ingesters.alpaca.venue:VENUE",
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
    with pytest.raises(
        SymbolError, match=r"unknown venue 'fakex': expected one of alpaca, binance, coinbase, dukascopy, kraken, oanda"
    ):
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


def test_its_settings_section_is_declared_in_its_package(fake: Venue, tmp_path: Path) -> None:
    cfg = tmp_path / "pulse.toml"
    cfg.write_text('[fakex]\nurl = "wss://elsewhere.invalid/ws"\napi_key = "fk-secret-1"\n')
    s = load_settings(cfg, environ={"PULSE_FAKEX__DEPTH": "10"})
    assert s.venue("fakex") == FakexSettings(url="wss://elsewhere.invalid/ws", depth=10, api_key="fk-secret-1")
    assert s.fakex.depth == 10  # a venue's section reads like a core one
    assert (
        s.source_of("fakex.url") == f"file {cfg}"
        and s.source_of("fakex.depth") == "environment variable PULSE_FAKEX__DEPTH"
    )
    assert s.redacted()["fakex"]["api_key"] == "***" and "fk-secret-1" in s.secrets()  # masked, and masked in logs
    key_file = tmp_path / "key"
    key_file.write_text("fk-from-file\n")
    s = load_settings(environ={"PULSE_FAKEX__API_KEY_FILE": str(key_file)})
    assert s.venue_secret("fakex", "api_key") == "fk-from-file" and "fk-from-file" in s.secrets()
    assert load_settings(environ={}).venue("fakex") == FakexSettings()  # absent: its defaults
    with pytest.raises(
        ConfigError,
        match=r"invalid setting fakex.depth = '7' \(from environment variable PULSE_FAKEX__DEPTH\).*allowed: 5, 10",
    ):
        load_settings(environ={"PULSE_FAKEX__DEPTH": "7"})
    with pytest.raises(ConfigError, match=r"section 'fakex' has no setting 'dpth' \(its keys: url, depth, api_key"):
        load_settings(environ={"PULSE_FAKEX__DPTH": "7"})


def test_an_unregistered_venue_has_no_settings_section(tmp_path: Path) -> None:
    cfg = tmp_path / "pulse.toml"
    cfg.write_text("[fakex]\ndepth = 5\n")
    with pytest.raises(
        ConfigError, match=r"unknown settings section \[fakex\] \(in file .*\): expected one of .*kraken"
    ):
        load_settings(cfg, environ={})


def test_history_sources_and_instrument_calendars_through_the_registry() -> None:
    """A venue's own history source wins; a venue without one is refilled by a source that serves ``others`` and
    accepts the symbol; a per-instrument calendar overrides the venue's. No venue is named by the seam."""

    async def fetch(settings: object, symbol: str, start: datetime, end: datetime) -> list[object]:
        return []

    own = venues.HistorySource(label="own REST", channel="trade", fetch=fetch)
    shared = venues.HistorySource(label="archive", channel="quote", fetch=fetch, others=True)
    with_own = Venue(name="histown", namespace="crypto", channels=("trade",), default_channels=("trade",), live=True,
                     resolve=_resolve, history=own)  # fmt: skip
    archive = Venue(name="histarchive", namespace="historical", channels=("quote",), default_channels=("quote",),
                    live=False, resolve=_resolve, history=shared,
                    calendar_for=lambda s: _NeverOpen() if s == "AAA/BBB" else venues.ALWAYS)  # fmt: skip
    bare = Venue(name="histbare", namespace="fx", channels=("quote",), default_channels=("quote",), live=True,
                 resolve=lambda t: Resolved("ZZZ/QQQ", "ZZZQQQ", "fx", 4, 2))  # fmt: skip
    for v in (with_own, archive, bare):
        venues.register(v)
    try:
        assert venues.history_for("histown", "AAA/BBB") == (with_own, own)
        assert venues.history_for("histbare", "AAA/BBB") == (archive, shared)  # the archive accepts AAA/BBB
        assert venues.history_for("histbare", "A/B") is None  # nobody's rules accept it
        noon = datetime(2019, 2, 9, 12, tzinfo=UTC)
        assert not venues.calendar_of("histarchive", "AAA/BBB").is_open(noon)
        assert venues.calendar_of("histarchive", "CCC/DDD").is_open(noon)
        assert venues.calendar_of("histown", "AAA/BBB") is venues.ALWAYS  # no per-instrument calendar: the venue's
        assert venues.calendar_of("nosuchvenue", "AAA/BBB") is venues.ALWAYS
    finally:
        for v in (with_own, archive, bare):
            venues.unregister(v.name)
