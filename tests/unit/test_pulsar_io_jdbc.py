"""The pieces behind the Pulsar IO JDBC sink that need no broker: the connector archive's layout (what Pulsar's
NarClassLoader and ConnectorUtils read), the broker and functions worker settings written from the committed
files, and the sink's table, pattern and JDBC URL. The broker itself: tests/real_pulsar/test_real_jdbc.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from control_plane.jdbc_sink import (
    KEY,
    QUOTE_COLUMNS,
    check_table,
    create_table_sql,
    follows,
    jdbc_url,
    sink_follows_instrument,
    topics_pattern,
)
from control_plane.provision import provision_jdbc_sink
from control_plane.pulsar_admin import AdminError
from pulse.errors import ConfigError
from pulse.runtime.apache import CONF_DIR, jvm_command, write_config, write_functions_worker
from pulse.runtime.connectors import JDBC_POSTGRES_DIR, artifact_id, connector_version, write_nar
from pulse.schemas import avro_schema


def test_artifact_ids_of_jar_names() -> None:
    assert artifact_id("postgresql-42.5.5.jar") == "postgresql"
    assert artifact_id("pulsar-io-jdbc-core-4.0.6.jar") == "pulsar-io-jdbc-core"
    assert artifact_id("bcprov-jdk18on-1.78.1.jar") == "bcprov-jdk18on"
    assert artifact_id("netty-transport-native-epoll-4.1.118.Final-linux-x86_64.jar") == "netty-transport-native-epoll"


def test_nar_layout_and_provided_jars_left_out(tmp_path: Path) -> None:
    jars = []
    for name in ("pulsar-io-jdbc-postgres-4.0.6.jar", "postgresql-42.5.5.jar", "guava-33.0.0-jre.jar"):
        p = tmp_path / name
        p.write_bytes(b"PK jar " + name.encode())
        jars.append(p)
    nar = tmp_path / "x.nar"
    service = (JDBC_POSTGRES_DIR / "pulsar-io.yaml").read_text()
    bundled = write_nar(nar, jars, service, provided={"guava"})
    assert bundled == ["postgresql-42.5.5.jar", "pulsar-io-jdbc-postgres-4.0.6.jar"]
    with zipfile.ZipFile(nar) as z:
        names = z.namelist()
        assert names[:2] == ["META-INF/MANIFEST.MF", "META-INF/services/pulsar-io.yaml"]
        assert sorted(names[2:]) == [f"META-INF/bundled-dependencies/{b}" for b in bundled]
        assert z.read("META-INF/bundled-dependencies/postgresql-42.5.5.jar") == b"PK jar postgresql-42.5.5.jar"
        definition = yaml.safe_load(z.read("META-INF/services/pulsar-io.yaml"))
    assert definition["name"] == "jdbc-postgres"
    assert definition["sinkClass"] == "org.apache.pulsar.io.jdbc.PostgresJdbcAutoSchemaSink"
    assert definition["sinkConfigClass"] == "org.apache.pulsar.io.jdbc.JdbcSinkConfig"
    assert not nar.with_suffix(".partial").exists()


def test_connector_version_from_the_committed_pom() -> None:
    assert connector_version() == "4.0.6"  # Central serves pulsar-io-jdbc-* 4.0.6 and 4.0.8, not the broker's 4.0.7


def test_standalone_conf_is_the_committed_file_plus_this_runs_lines(tmp_path: Path) -> None:
    path = tmp_path / "broker-apache" / "standalone.conf"
    path.parent.mkdir()
    write_config(path, host="127.0.0.1", port=16650, admin_port=18081, extra=["brokerDeduplicationEnabled=true"],
                 functions=True)  # fmt: skip
    text = path.read_text()
    assert text.startswith((CONF_DIR / "standalone.conf").read_text().rstrip("\n"))
    last: dict[str, str] = {}
    for line in text.splitlines():  # a later line wins, as when the broker loads the file
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            last[k] = v
    assert last["brokerServicePort"] == "16650" and last["webServicePort"] == "18081"
    assert last["functionsWorkerEnabled"] == "true" and last["brokerDeduplicationEnabled"] == "true"
    assert last["STORAGE_PATH"] == str(tmp_path / "broker-apache" / "data" / "packages")


def test_functions_worker_settings_keep_the_thread_runtime(tmp_path: Path) -> None:
    path = tmp_path / "functions_worker.yml"
    write_functions_worker(path, connectors=tmp_path / "connectors", work=tmp_path / "fw")
    doc = yaml.safe_load(path.read_text())
    base = yaml.safe_load((CONF_DIR / "functions_worker.yml").read_text())
    assert doc["functionRuntimeFactoryClassName"] == "org.apache.pulsar.functions.runtime.thread.ThreadRuntimeFactory"
    assert doc["connectorsDirectory"] == str(tmp_path / "connectors")
    assert doc["narExtractionDirectory"] == str(tmp_path / "fw" / "nar")
    moved = {"connectorsDirectory", "narExtractionDirectory", "downloadDirectory", "functionsDirectory"}
    assert {k: v for k, v in doc.items() if k not in moved} == {k: v for k, v in base.items() if k not in moved}


def test_functions_worker_flag_on_the_command_line(tmp_path: Path) -> None:
    kw = {"heap_mb": 512, "bookie_port": 1, "data": tmp_path}
    off = jvm_command(tmp_path, tmp_path / "c", tmp_path / "l", **kw)  # type: ignore[arg-type]
    on = jvm_command(tmp_path, tmp_path / "c", tmp_path / "l", functions_worker=tmp_path / "fw.yml", **kw)  # type: ignore[arg-type]
    assert "--no-functions-worker" in off and "--functions-worker-conf" not in off
    assert "--no-functions-worker" not in on
    assert on[on.index("--functions-worker-conf") + 1] == str(tmp_path / "fw.yml")


def test_table_columns_are_fields_of_the_registered_quote_schema() -> None:
    fields = {f["name"]: f["type"] for f in avro_schema("quote")["fields"]}
    assert set(QUOTE_COLUMNS) <= set(fields)
    assert set(fields) - set(QUOTE_COLUMNS) == {"bids", "asks"}  # arrays: no column
    assert set(KEY) <= set(QUOTE_COLUMNS)
    sql = create_table_sql("hist_quotes")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS hist_quotes (venue text NOT NULL,")
    assert sql.endswith("PRIMARY KEY (venue, symbol, ts_event, seq))")


@pytest.mark.parametrize("bad", ["Quotes", "1q", "q;drop table x", "a-b", "", "x" * 64])
def test_table_names_that_could_inject_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="--jdbc-table"):
        check_table(bad)


def test_jdbc_url() -> None:
    assert jdbc_url("postgresql://u:secret@127.0.0.1:5433/pulse") == (
        "jdbc:postgresql://127.0.0.1:5433/pulse?stringtype=unspecified"
    )
    assert jdbc_url("postgresql://u@localhost/pulse", "db") == "jdbc:postgresql://db:5432/pulse?stringtype=unspecified"
    with pytest.raises(ConfigError, match="postgresql://"):
        jdbc_url("mysql://u@h/db")


def test_follows_a_pattern_or_a_listed_topic() -> None:
    t = "persistent://market-data/historical/dukascopy.GBP-USD.quote"
    pattern = topics_pattern("market-data")
    assert follows({"inputSpecs": {pattern: {"regexPattern": True}}}, t)  # as the worker returns it
    assert follows({"topicsPattern": pattern}, t)
    assert not follows({"inputSpecs": {pattern: {"regexPattern": True}}}, t.replace(".quote", ".candle"))
    assert not follows({"inputSpecs": {pattern: {"regexPattern": True}}}, t.replace("historical", "fx"))
    assert follows({"inputs": [t]}, t)
    assert not follows({"inputs": [t.replace("GBP", "EUR")], "inputSpecs": {}}, t)


async def test_sink_needs_inputs_or_a_pattern_and_upsert_keys() -> None:
    kw = {"name": "s", "jdbc_url": "jdbc:postgresql://db/pulse", "table_name": "t"}
    with pytest.raises(ConfigError, match="exactly one"):
        await provision_jdbc_sink(None, **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exactly one"):
        await provision_jdbc_sink(None, inputs=["a"], topics_pattern="b", **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="UPSERT needs key"):
        await provision_jdbc_sink(None, inputs=["a"], insert_mode="UPSERT", key="k", **kw)  # type: ignore[arg-type]


def test_backfill_batches_have_their_own_channel_topic_and_schema() -> None:
    from control_plane.provision import schema_properties
    from pulse.schemas import registered_schema
    from pulse.settings import Settings
    from pulse.topics import CHANNEL_OF_EVENT, reading_channels
    from sinks.postgres.sources import topics_for_sources

    assert CHANNEL_OF_EVENT["quote"] == "quote" and CHANNEL_OF_EVENT["quote_batch"] == "quote_batch"
    # a quote topic's schema describes every message on it: Quotes (and status markers), no batches
    assert schema_properties("quote")["pulse.event_types"] == "quote,status"
    assert schema_properties("quote_batch")["pulse.event_types"] == "quote_batch,status"
    assert '"name": "QuoteBatch"' in registered_schema("quote_batch")
    # readers of historical quotes read the batches too; live namespaces have none
    assert reading_channels("historical", ["trade", "quote", "status"]) == ["trade", "quote", "quote_batch", "status"]
    assert reading_channels("fx", ["quote", "status"]) == ["quote", "status"]
    topics = topics_for_sources(Settings(), ["historical/dukascopy=EUR/USD", "fx/oanda=EUR/USD"])
    assert "persistent://market-data/historical/dukascopy.EUR-USD.quote_batch" in topics
    assert not any(t.endswith(".quote_batch") and "/fx/" in t for t in topics)


class _Admin:
    """Answers ``get_sink`` as a cluster would: a SinkConfig, or the AdminError the admin client raises."""

    def __init__(self, answer: dict | AdminError) -> None:
        self.answer = answer

    async def get_sink(self, tenant: str, namespace: str, name: str) -> dict:
        if isinstance(self.answer, AdminError):
            raise self.answer
        return self.answer


def test_symbols_add_says_when_the_sink_could_not_be_read() -> None:
    import asyncio

    def ask(answer: dict | AdminError) -> object:
        return asyncio.run(sink_follows_instrument(_Admin(answer), "market-data", "dukascopy", "GBP/USD"))  # type: ignore[arg-type]

    # a functions worker that did not answer in time is not "no sink": the step says it could not tell
    slow = ask(AdminError("get sink market-data/historical/pulse-historical-jdbc", 0, "GET …: TimeoutError: timeout"))
    assert str(slow).startswith("sink market-data/historical/pulse-historical-jdbc: unknown (could not read it:")
    assert ask(AdminError("get sink", 503, "no functions worker")) is None  # a cluster without Pulsar IO
    pattern = "persistent://market-data/historical/.*\\.quote"
    follows_it = ask({"inputSpecs": {pattern: {"regexPattern": True}}})
    assert str(follows_it).endswith("exists (reads persistent://market-data/historical/dukascopy.GBP-USD.quote)")
