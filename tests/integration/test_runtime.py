"""The embedded runtime really starts a Pulsar-protocol broker and a PostgreSQL server."""

from __future__ import annotations

import socket
import urllib.request

import psycopg
import pulsar
import pytest

from pulse.errors import BrokerUnavailable, PortInUseError
from pulse.runtime import Runtime, resolve_endpoints
from pulse.settings import Settings
from tests.conftest import make_settings


def test_broker_round_trip_and_database(endpoints, unique: str) -> None:
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        t = f"persistent://market-data/control/rt-{unique}"
        consumer = client.subscribe(t, "rt", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(t)
        producer.send(b"hello")
        msg = consumer.receive(timeout_millis=5000)
        assert msg.data() == b"hello"
    finally:
        client.close()
    with psycopg.connect(endpoints.database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("pulse",)


def test_metrics_moved_off_8080(endpoints) -> None:
    assert ":8080/" not in endpoints.broker_metrics_url
    body = urllib.request.urlopen(endpoints.broker_metrics_url, timeout=5).read().decode()
    assert "pulsar" in body


def test_port_in_use_is_named(tmp_path, runtime_settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        settings = make_settings(tmp_path, PULSE_RUNTIME__BROKER_PORT=str(taken))
        with pytest.raises(PortInUseError, match=rf"port {taken} .*runtime.broker_port"):
            Runtime(settings).up()
    assert not (tmp_path / "runtime.json").exists()


def test_commands_refuse_without_runtime(tmp_path) -> None:
    with pytest.raises(BrokerUnavailable, match="pulse up"):  # exit 69: nothing to reach, not a bad argument
        resolve_endpoints(make_settings(tmp_path))
