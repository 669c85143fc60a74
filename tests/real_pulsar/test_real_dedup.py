"""Broker deduplication on Apache Pulsar: a Dukascopy backfill killed mid-stream and run again under the same
producer name and sequence ids leaves each tick in the topic once; with deduplication off the same crash and
restart leaves copies in the topic (so the check can fail).

Each test provisions its own tenant from ``pulsar/namespaces.yaml`` through the real admin API (the historical
namespace has ``deduplication: true``), so the topic starts empty and holds only this test's messages. The venue
is ``pulse simulate dukascopy`` serving the shipped files with latency; the backfill runs as ``pulse backfill
dukascopy`` in its own process and is SIGKILLed as soon as its first message is on the topic. Then its checkpoint
file is removed: the worst case of the crash window (messages on the broker, their hour not checkpointed),
widened to every hour, so the re-run re-sends everything the killed run had published and the broker must drop
all of it. Read back with a reader from the earliest position: the topic, not only a database, is checked.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pulsar
import pytest

from control_plane.provision import provision_base_sync
from ingesters.dukascopy.service import producer_prefix
from pulse.codec import decode_any
from pulse.models import QuoteBatch
from pulse.runtime.procs import free_port
from pulse.settings import Settings
from tests.conftest import SHARED_DATA
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

DATA = SHARED_DATA / "dukascopy"
pytestmark = pytest.mark.skipif(not (DATA / "EURUSD" / "2019" / "01" / "04").is_dir(), reason="no shared data")

TICKS = 12_000  # 3,733 + 2,825 + 2,474 + 2,968 in the four hour files
MESSAGES = 13  # QuoteBatches of up to 1,000 ticks, each hour cut from its first tick: 4 + 3 + 3 + 3
RANGE = ("--from", "2019-02-04T00", "--to", "2019-02-04T04")
T0, T4 = datetime(2019, 2, 4, 0, tzinfo=UTC), datetime(2019, 2, 4, 4, tzinfo=UTC)


def _admin(settings: Settings, method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        settings.pulsar.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=15) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def _tenant(settings: Settings, name: str, *, dedup: bool) -> Settings:
    """Provision tenant ``name`` from namespaces.yaml (as `pulse pulsar provision` does); optionally turn the
    historical namespace's deduplication off. Returns the settings pointing at that tenant."""
    s = msgspec.structs.replace(settings, pulsar=msgspec.structs.replace(settings.pulsar, tenant=name))
    provision_base_sync(s)
    if not dedup:
        _admin(s, "POST", f"/admin/v2/namespaces/{name}/historical/deduplication", False)
    policies = _admin(s, "GET", f"/admin/v2/namespaces/{name}/historical")
    assert policies["deduplicationEnabled"] is dedup, policies  # type: ignore[index]
    return s


def _read_all(url: str, topic: str) -> list[tuple[QuoteBatch, str]]:
    """Every message of ``topic`` from the earliest position (until 5 s of silence), with its producer name."""
    client = pulsar.Client(url)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        out: list[tuple[QuoteBatch, str]] = []
        while True:
            try:
                msg = reader.read_next(timeout_millis=5000)
            except pulsar.Timeout:
                return out
            ev = decode_any(msg.data(), msg.properties())
            assert isinstance(ev, QuoteBatch), type(ev)
            out.append((ev, msg.producer_name()))
    finally:
        client.close()


def _seqs(batches: list[tuple[QuoteBatch, str]]) -> list[int]:
    return [t.seq for b, _ in batches for t in b.ticks]


def _kill_restart(settings: Settings, tmp_path: Path, tenant: str) -> tuple[int, dict[str, object]]:
    """Backfill, SIGKILL once the first message is on the topic, drop the checkpoint, run again to the end.
    Returns (ticks on the topic right after the kill, the second run's JSON summary)."""
    topic = f"persistent://{tenant}/historical/dukascopy.EUR-USD.quote_batch"
    port = free_port()
    env = {
        "PULSE_PULSAR__TENANT": tenant,
        "PULSE_DUKASCOPY__CONCURRENCY": "1",  # hours one by one, so a kill lands mid-run
        "PULSE_DUKASCOPY__CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    venue = pulse_cmd(settings, "simulate", "dukascopy", "--root", str(DATA), "--port", str(port), "--latency", "0.4")
    base_url = f"http://127.0.0.1:{port}/datafeed"
    cmd = ("backfill", "dukascopy", "EURUSD", *RANGE, "--feed", "bi5", "--base-url", base_url, "--json")
    with process(venue):
        wait_for(lambda: _answers(base_url), "the local Dukascopy venue", timeout=30)
        client = pulsar.Client(settings.pulsar.url)
        try:
            watcher = client.create_reader(topic, pulsar.MessageId.earliest)
            first = pulse_cmd(settings, *cmd, env=env)
            with process(first):
                watcher.read_next(timeout_millis=60_000)  # the killed run's first message is on the broker
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                assert first.returncode == -signal.SIGKILL
        finally:
            client.close()
        before = len(_seqs(_read_all(settings.pulsar.url, topic)))
        assert 0 < before < TICKS, f"the kill did not land mid-stream ({before} ticks on the topic)"
        for f in (tmp_path / "checkpoints").glob("dukascopy-checkpoints.sqlite3*"):
            f.unlink()
        again = pulse(settings, *cmd, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        code, _out, err = stop(venue)
        assert code in (0, -signal.SIGTERM), err[-1000:]
    return before, json.loads(again.stdout)


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/EURUSD/2019/01/04/00h_ticks.bi5", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_backfill_killed_and_restarted_leaves_each_tick_once_in_the_topic(
    apache_settings: Settings, tmp_path: Path, unique: str
) -> None:
    tenant = f"dedup-{unique}"
    s = _tenant(apache_settings, tenant, dedup=True)
    before, summary = _kill_restart(s, tmp_path, tenant)
    # the re-run re-sent everything, the part the killed run had published included …
    assert summary["published"] == TICKS and summary["messages"] == MESSAGES, summary
    batches = _read_all(s.pulsar.url, f"persistent://{tenant}/historical/dukascopy.EUR-USD.quote_batch")
    seqs = _seqs(batches)
    # … and the topic holds each tick once, in order, every message from the one stable producer name
    assert len(seqs) == TICKS and len(set(seqs)) == TICKS, f"{len(seqs) - len(set(seqs))} duplicate ticks"
    assert seqs == sorted(seqs)
    assert len(batches) == MESSAGES
    name = f"{producer_prefix(T0, T4)}.dukascopy.EUR-USD.quote_batch"
    assert {p for _, p in batches} == {name}
    assert before > 0


def test_without_deduplication_the_same_crash_duplicates_messages_in_the_topic(
    apache_settings: Settings, tmp_path: Path, unique: str
) -> None:
    tenant = f"nodedup-{unique}"
    s = _tenant(apache_settings, tenant, dedup=False)
    before, summary = _kill_restart(s, tmp_path, tenant)
    assert summary["published"] == TICKS, summary
    seqs = _seqs(_read_all(s.pulsar.url, f"persistent://{tenant}/historical/dukascopy.EUR-USD.quote_batch"))
    assert len(set(seqs)) == TICKS
    assert len(seqs) == TICKS + before, "without deduplication the killed run's messages stay in the topic twice"
