"""What pulsar-lite (the embedded default broker) does with Key_Shared, the subscription type the consumers scale
out on (README "Scaling out"): two processes on one Key_Shared subscription should split the keys between them.

pulsar-lite 0.2.0 does not: its Key_Shared dispatcher tells consumers apart by the id each client gives its own
consumers (every process's first consumer is 0), so it refuses the second process's subscription ("Consumer 0
already exists in key-shared dispatcher", in its log) and drops that connection; the second process receives
nothing and every key goes to the first (seen here; with the matching services, the second instance never gets
its consumers and does not start). That is why ``subscription_type = auto``
means Shared (one instance) on pulsar-lite; the scale-out is tested on Apache Pulsar (tests/real_pulsar). The test
is a strict xfail: it starts passing, and so fails, the day pulsar-lite gets this right.
"""

from __future__ import annotations

import multiprocessing as mp

import pulsar
import pytest

from pulse.runtime import Endpoints

KEYS = [f"K{i}" for i in range(8)]


def _consume(url: str, topic: str, sub: str, ready: mp.Event, done: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    client = pulsar.Client(url, operation_timeout_seconds=10)
    try:
        c = client.subscribe(topic, sub, consumer_type=pulsar.ConsumerType.KeyShared)
    except Exception as exc:
        out.put(("error", str(exc)))
        ready.set()
        client.close()
        return
    ready.set()
    keys = set()
    while True:
        try:
            msg = c.receive(timeout_millis=3000)
        except pulsar.Timeout:
            break
        keys.add(msg.partition_key())
        c.acknowledge(msg)
    out.put(("keys", sorted(keys)))
    client.close()


@pytest.mark.xfail(strict=True, reason="pulsar-lite 0.2.0: a second process cannot join a Key_Shared subscription")
def test_two_processes_on_one_key_shared_subscription_split_the_keys(endpoints: Endpoints, unique: str) -> None:
    topic = f"persistent://public/default/keyshared-{unique}"
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    done = ctx.Event()
    procs, readies = [], []
    for _ in range(2):
        ready = ctx.Event()
        p = ctx.Process(target=_consume, args=(endpoints.pulsar_url, topic, f"ks-{unique}", ready, done, out))
        p.start()
        assert ready.wait(60)
        procs.append(p)
        readies.append(ready)
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(400):
            producer.send(b"x%d" % i, partition_key=KEYS[i % len(KEYS)])
    finally:
        client.close()
    done.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    errors = [r[1] for r in results if r[0] == "error"]
    assert not errors, errors
    got = [set(r[1]) for r in results]
    assert all(got) and not (got[0] & got[1]) and got[0] | got[1] == set(KEYS), got
