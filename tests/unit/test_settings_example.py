"""The shipped, commented ``pulse.toml.example`` (written by ``pulse config example``) is a valid settings file
that changes nothing, and documents every key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
from click.testing import CliRunner

from cli import cli
from pulse.settings import Settings, load_settings, section_models
from pulse.settings_toml import field_comments

EXAMPLE = Path(__file__).resolve().parents[2] / "pulse.toml.example"


def test_the_example_loads_and_sets_every_key_to_its_default() -> None:
    from_example = load_settings(EXAMPLE, environ={})
    assert from_example.redacted() == Settings().redacted()
    assert from_example.source_of("sink.batch_size") == f"file {EXAMPLE}"


def test_the_example_documents_every_core_section_and_key() -> None:
    doc = tomllib.loads(EXAMPLE.read_text())
    for section, model in section_models().items():
        if section in ("runtime", "pulsar", "database", "sink", "matching", "alerting", "web", "metrics", "logging"):
            assert set(doc[section]) == set(model.__struct_fields__), section
    text = EXAMPLE.read_text()
    assert "# partitions per topic when the control plane provisions an instrument" in text  # the field's comment


def test_config_example_prints_what_is_shipped_plus_any_new_section() -> None:
    res = CliRunner().invoke(cli, ["config", "example"])
    assert res.exit_code == 0, res.output
    printed = tomllib.loads(res.output)
    assert set(printed) == set(section_models())  # every registered venue's section too
    assert printed["kraken"] == msgspec.to_builtins(Settings().kraken)


def test_field_comments_come_from_the_source() -> None:
    from pulse.settings import PulsarSettings

    comments = field_comments(PulsarSettings)
    assert comments["url"] == "pulsar://host:6650 or pulsar+ssl://host:6651"
    assert comments["publish_process"].startswith("live ingesters: hand encoded messages to a publisher process")
    assert "tenant" not in comments  # no comment, nothing invented


def test_the_shipped_example_is_current() -> None:
    """A new venue or key must reach the shipped file (`pulse config example > pulse.toml.example`)."""
    res = CliRunner().invoke(cli, ["config", "example"])
    assert res.exit_code == 0, res.output
    stale = "pulse.toml.example is stale: run `pulse config example > pulse.toml.example`"
    assert res.output == EXAMPLE.read_text(), stale
