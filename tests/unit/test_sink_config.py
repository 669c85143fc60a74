"""The sink's YAML config: the example loads, defaults match the foundation sink, and every wrong name is refused
with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse.errors import ConfigError
from pulse.settings import Settings
from sinks.postgres.config import default_config, load_sink_config, parse_sink_config

EXAMPLE = Path(__file__).resolve().parents[2] / "sinks" / "postgres" / "sinks.example.yaml"


def test_example_loads_and_expands_to_topics() -> None:
    cfg = load_sink_config(EXAMPLE, Settings())
    topics = cfg.topic_list("market-data")
    assert "persistent://market-data/historical/dukascopy.EUR-USD.quote" in topics
    assert "persistent://market-data/crypto/kraken.BTC-USD.trade" in topics
    assert cfg.table_modes()["quotes"][0] == "upsert"
    assert cfg.policies("gaps").retention == "365 days" and cfg.policies("trades").retention is None
    assert cfg.policies("trades").compress_after == "7 days"


def test_defaults_are_the_foundation_sink() -> None:
    cfg = default_config(Settings(), ["persistent://market-data/crypto/kraken.BTC-USD.trade"])
    assert {m for m, _ in cfg.table_modes().values()} == {"insert"}
    assert cfg.table_of("ticker") == "quotes" and cfg.dead_letter("t") == "persistent://t/deadletter/sink.postgres"
    src = parse_sink_config({"sources": [{"venue": "dukascopy", "symbols": ["EUR/USD"]}]})
    assert src.sources[0].namespace == "historical"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"tables": {"quote": {"mode": "merge"}}}, "unknown insert mode 'merge'"),
        ({"tables": {"quote": {"table": "nope"}}}, "unknown table 'nope'"),
        ({"tables": {"trade": {"key": ["venue", "symbol", "tid", "time"]}}}, "unknown field 'tid'"),
        ({"tables": {"trade": {"key": ["venue", "symbol", "trade_id"]}}}, "not a unique key"),
        ({"tables": {"candle": {"table": "trades", "key": ["time"]}}}, "unknown event type 'candle'"),
        ({"tables": {"quote": {"mode": "upsert"}}}, "both write table 'quotes'"),
        ({"bogus": 1}, "unknown field `bogus`"),
        ({"timescale": {"chunk_interval": "1 fortnight"}}, "timescale.chunk_interval"),
        ({"timescale": {"segment_by": ["venue", "price"]}}, "no column 'price'"),
        ({"sources": [{"namespace": "nope", "venue": "x", "symbols": ["A/B"]}]}, "unknown namespace 'nope'"),
        ({"sources": [{"venue": "x", "symbols": ["eur/usd"]}]}, "not canonical"),
    ],
)
def test_wrong_names_are_refused(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_sink_config({"topics": ["persistent://market-data/crypto/kraken.BTC-USD.trade"], **raw})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sink_config(tmp_path / "sinks.yaml")
