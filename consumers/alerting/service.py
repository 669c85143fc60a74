"""The alerting service: live market-data topics → :class:`AlertEngine` → alert events, rows and webhooks.

Threads, so that nothing slow sits between a tick and its alert::

    main (caller's thread)                      writer thread                    webhook thread (asyncio)
    receive → decode → engine.on_event          store alerts (ON CONFLICT DO     POST, signed, retried
    → publish each alert at once (send_async)   NOTHING) → new ones to webhooks  with capped backoff
    every timer_interval_s: engine.on_timer     snapshot + acks: upsert state,
    every snapshot_interval_s: snapshot the     flush the alert producer, then
      instruments touched, hand it over with    acknowledge the messages the
      the messages it covers                    snapshot covers

Restart semantics (decided: **snapshot + replay**, not a rebuild from history — pulsar-lite cannot seek to
earliest and a rebuild would need hours of ticks for long windows): market-data messages are acknowledged
only after the snapshot that includes their effect has committed. After a crash or SIGKILL the broker
redelivers exactly the unacknowledged messages, which the engine replays on top of the last snapshot: the
state is then the same as if the process had never stopped, and because the engine is deterministic the
replay produces the same alerts with the same ids. The ``alerts`` table stores each once and webhooks are
sent only for alerts the database had not seen; the alert *topic* may carry a replayed alert twice
(at-least-once — de-duplicate on ``alert_id``). Stale-feed silence is measured on our clock, so it restarts
counting at service start.

Latency path (main thread): a blocking ``receive`` per message (one already queued returns at once; the loop leaves
for the timer, snapshot and status work only when one is due, and never polls with a zero timeout, whose timeout is
a raised exception costing ~60-70 µs); each is decoded only if its topic carries an instrument some rule reads
(explicit extra topics are skipped undecoded), evaluated, and its alerts are sent at once on a non-batching
producer. The main thread never waits on the database or webhooks: alert groups go to the writer through an
unbounded queue, at most one snapshot is in flight (while one commits, the next interval's messages simply stay
held), and only a backlog of more than ``_MAX_HELD`` unacknowledged messages (the database is down) makes it wait.
The GIL switch interval is lowered so the writer and webhook threads cannot delay a tick by the default 5 ms, and
the objects built at start are frozen out of the garbage collector's scans. ``lag_p50_ms`` / ``lag_p99_ms`` in the
status are how long after their ``ts_recv`` the last 4,096 ticks were evaluated.

Scale-out (``alerting.subscription_type``; ``auto`` = key_shared on a real cluster, shared on the embedded
pulsar-lite, whose Key_Shared dispatch is slow and stalls after a consumer dies with unacknowledged messages —
shared then means ONE service instance): a Key_Shared subscription keyed by the message key (the symbol), so
every tick of an instrument goes to the same consumer, in order; a ``divergence`` rule's two venues route one
symbol to the same consumer because every consumer joins every topic together (same consumers, same hash
ranges). When the broker moves a symbol, its state follows through the database: :mod:`.handover`.

SIGTERM/SIGINT (the caller sets ``stop``): the last snapshot is written, alerts flushed, messages
acknowledged, webhooks in flight get ``webhook_timeout_s`` to finish, and ``run`` returns.
"""

from __future__ import annotations

import gc
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pulsar
import sqlalchemy.exc

from consumers.alerting.engine import AlertEngine
from consumers.alerting.handover import Handover, position
from consumers.alerting.messages import Alert, alert_properties, encode_alert
from consumers.alerting.rules import Rule
from consumers.alerting.store import AlertStore, Fence
from consumers.alerting.webhooks import WebhookSender, WebhookWorker, check_webhooks
from pulse.bus import Bus, SubscriptionType
from pulse.errors import BusError, CodecError
from pulse.log import get_logger
from pulse.models import Event
from pulse.polling import poll_until_changed
from pulse.retry import RetryStopped, counting, retry_until_ok
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import StatusFile
from pulse.topics import service_topic, topic
from pulse.venues import get as get_venue

log = get_logger(__name__)

_RECEIVE_MS = 50
_STORE_EVERY_S = 0.05
_DRAIN_MAX = 1000  # messages processed per drain before the timer/snapshot/status checks run again
_MAX_HELD = 200_000  # unacknowledged messages held before the main loop waits for the writer (database down)
_SNAPSHOT_RETRY_S = 0.1  # a snapshot is due but the previous one is still committing: look again this soon
_SWITCH_INTERVAL_S = 0.0005  # GIL switch interval while the service runs (default 5 ms)
_LAG_SAMPLES = 4096  # tick lag (tick's ts_recv → evaluated here) kept for the status percentiles
_json_dec = msgspec.json.Decoder(Event)
_mp_dec = msgspec.msgpack.Decoder(Event)


def decode_event(data: bytes) -> Event:
    """JSON or MessagePack event, told apart by the first byte (a JSON event is an object)."""
    try:
        return _json_dec.decode(data) if data[:1] == b"{" else _mp_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"cannot decode event: {exc}") from exc


def topics_for_rules(settings: Settings, rules: Iterable[Rule]) -> list[str]:
    """The live topics the rules read: venue → namespace (kraken → crypto, oanda → fx), one topic per instrument
    and channel the rule needs (quote for bid/ask/mid, trade for last price and volume), sorted, no duplicates."""
    out: set[str] = set()
    tenant = settings.pulsar.tenant
    for r in rules:
        if not r.enabled:
            continue
        for venue, symbol in r.instruments():
            v = get_venue(venue)
            for ch in r.channels():
                if v.publishes(ch):  # (OANDA publishes quotes only)
                    out.add(topic(v.namespace, venue, symbol, ch, tenant))
    return sorted(out)


def alerts_topic(settings: Settings) -> str:
    return service_topic("alerts", settings.alerting.alerts_topic, settings.pulsar.tenant)


@dataclass
class AlertingStats:
    received: int = 0  # messages
    decode_errors: int = 0
    alerts: int = 0  # produced by the engine
    published: int = 0  # acknowledged by the broker
    publish_failed: int = 0
    stored: int = 0  # new rows in the alerts table
    duplicates: int = 0  # alerts the table already had (replays)
    snapshots: int = 0
    acked: int = 0
    db_errors: int = 0
    broker_errors: int = 0
    restored_rules: int = 0
    takeovers: int = 0  # scale-out: symbols claimed (their state loaded from the database)
    replays_skipped: int = 0  # scale-out: redelivered messages the loaded state already covered
    symbols_lost: int = 0  # scale-out: owned symbols another instance took over
    cpu_s: float = 0.0  # process CPU time while running (user + system)


class _Snapshot(msgspec.Struct, kw_only=True):
    state: dict[tuple[str, str], bytes]
    msgs: list[Any]
    fences: dict[str, Fence] | None = None  # scale-out: what it commits per owned symbol
    held: dict[str, int] | None = None  # scale-out: every symbol owned when it was taken (symbol → epoch)


_DONE = object()


class AlertingService:
    """Evaluate ``rules`` (default: the enabled rules in the database) against ``topics`` (default: the topics
    the rules need). Webhook settings are checked here, before anything connects. Call :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        topics: Sequence[str] | None = None,
        *,
        rules: Sequence[Rule] | None = None,
        name: str = "alerting",
        status_home: Path | None = None,
        follow_rules: bool = False,
        stats: AlertingStats | None = None,
    ) -> None:
        a = settings.alerting
        secret = settings.webhook_secret()
        check_webhooks(a.webhooks, a.webhook_allowed_hosts, secret)  # refuse a bad host before starting anything
        self.settings = settings
        self.endpoints = endpoints
        self.name = name
        self.store = AlertStore(endpoints.database_url, pooled=True)
        self._rules = list(rules) if rules is not None else None
        self._topics = list(topics) if topics else None
        self.topic = alerts_topic(settings)
        self.stats = stats or AlertingStats()  # a reload carries the counters over
        self.engine: AlertEngine | None = None
        # follow_rules: poll the stored rules every alerting.rules_poll_s; a change ends run() like a stop (final
        # snapshot, acks) with rules_changed set, and the caller starts again on the new rules
        self.follow_rules = follow_rules and a.rules_poll_s > 0
        self.rules_changed = threading.Event()
        self._sender = (
            WebhookSender(a.webhooks, secret, allowed_hosts=a.webhook_allowed_hosts, timeout_s=a.webhook_timeout_s,
                          max_attempts=a.webhook_max_attempts, backoff_max_s=a.webhook_backoff_max_s)
            if a.webhooks else None
        )  # fmt: skip
        self._webhooks: WebhookWorker | None = None
        self._status = StatusFile(status_home, name) if status_home is not None else None
        self._handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()  # unbounded: never blocks the main thread
        self._snap_inflight = threading.Event()  # a snapshot is handed over and not yet committed
        self._writer_error: BaseException | None = None
        self._bus: Bus | None = None
        self._consumer: pulsar.Consumer | None = None
        self._producer: pulsar.Producer | None = None
        self._lag: list[int] = []  # ring of the last _LAG_SAMPLES tick lags (ns)
        self._lag_pos = 0
        self._own: Handover | None = None  # scale-out (key_shared): owned symbols, see handover.py

    @property
    def topics(self) -> list[str]:
        return list(self._topics or [])

    def consumer_type(self) -> SubscriptionType:
        """``alerting.subscription_type``: Key_Shared (scale out by instrument) on a real cluster; Shared on the
        embedded pulsar-lite, whose Key_Shared dispatch is slow and stalls after a consumer died with
        unacknowledged messages. Shared means one service instance per subscription."""
        kind = self.settings.alerting.subscription_type
        if kind == "auto":
            kind = "shared" if not self.settings.pulsar.url else "key_shared"
        return "shared" if kind == "shared" else "key_shared"

    def _skip_topics(self, rules: Sequence[Rule]) -> frozenset[str]:
        """Subscribed topics no rule reads (explicit topics): their messages are acknowledged undecoded."""
        return frozenset(self.topics) - frozenset(topics_for_rules(self.settings, rules))

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then snapshot, flush, acknowledge, close."""
        writer: threading.Thread | None = None
        try:
            self._retry("prepare database", self.store.ensure_schema, stop)
            if self._rules is None:
                self._rules = self._retry("load rules", lambda: self.store.rules(enabled_only=True), stop)
            engine = self.engine = AlertEngine(self._rules)
            if self._topics is None:
                self._topics = topics_for_rules(self.settings, self._rules)
            if not self._topics:
                raise BusError("no topics to consume: no enabled rule (add one with `pulse alerts add`)")
            sub_type = self.consumer_type()
            if sub_type == "key_shared":  # state is loaded per symbol when the broker first hands it to us
                owner = f"{self.name}:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
                self._own = Handover(self.store, owner, engine.snapshot(), self.topic)
            else:
                blobs = self._retry("load state", lambda: self.store.load_state(engine.instruments()), stop)
                self.stats.restored_rules = engine.restore(blobs)
            if self._sender is not None:
                self._webhooks = WebhookWorker(self._sender)
            self._bus = Bus(self.settings, self.endpoints.pulsar_url)
            bus = self._bus
            self._producer = self._alert_producer(bus)
            if self._own is not None:
                self._own.client = bus.client
            # receiver_queue_size is not a latency lever here (one-hop experiments, 100 topics at 5,000 msgs/s:
            # p99 ~320 ms at 1,000 and 5,000, worse at 100): the time is spent in the broker before it acks the
            # publish. One consumer per topic was worse still, and Key_Shared on pulsar-lite dispatched nothing.
            self._consumer = self._retry(
                "subscribe",
                lambda: bus.subscribe(self.topics, self.settings.alerting.subscription, sub_type=sub_type,
                                      consumer_name=f"{self.name}-{id(self):x}", receiver_queue_size=1000),
                stop,
                broker=True,
            )  # fmt: skip
            writer = threading.Thread(target=self._write_loop, args=(stop,), name=f"{self.name}-writer")
            writer.start()
            if self.follow_rules:
                ids = tuple(sorted(r.id for r in self._rules if r.enabled))
                threading.Thread(target=self._watch_rules, args=(ids, stop), name=f"{self.name}-rules",
                                 daemon=True).start()  # fmt: skip
            log.info(
                "alerting started",
                rules=len(self._rules),
                instruments=len(engine.instruments()),
                topics=len(self.topics),
                restored_rules=self.stats.restored_rules,
                alerts_topic=self.topic,
                webhooks=len(self.settings.alerting.webhooks),
                subscription_type=sub_type,
            )
            gc.freeze()  # rules, engine and client objects are long-lived: keep them out of every collection
            switch = sys.getswitchinterval()
            sys.setswitchinterval(_SWITCH_INTERVAL_S)
            try:
                self._loop(engine, stop, self._skip_topics(self._rules))
            finally:
                sys.setswitchinterval(switch)
        except RetryStopped:
            log.warning("stopped before the service was ready")
        finally:
            if writer is not None:
                self._put(_DONE)
                writer.join()
            if self._webhooks is not None:
                self._webhooks.close(self.settings.alerting.webhook_timeout_s)
            self._close()
        log.info("alerting stopped", **asdict(self.stats))
        if self._writer_error is not None:
            raise self._writer_error

    def _loop(self, engine: AlertEngine, stop: threading.Event, skip: frozenset[str] = frozenset()) -> None:
        consumer = self._consumer
        assert consumer is not None
        receive = consumer.receive
        own = self._own
        on_event = engine.on_event
        monotonic = time.monotonic
        lags = self._lag
        cfg = self.settings.alerting
        held: list[Any] = []  # messages applied to the engine, not yet covered by a committed snapshot
        pending: list[Alert] = []
        next_timer = next_snap = handed_at = time.monotonic()
        st = self.stats
        changed = self.rules_changed
        while not stop.is_set() and not changed.is_set() and self._writer_error is None:
            if len(held) > _MAX_HELD and self._snap_inflight.is_set():
                stop.wait(0.05)  # the database is away: stop consuming until the snapshot in flight commits
                self._tick()
                continue
            try:
                msg = receive(_RECEIVE_MS)
            except pulsar.Timeout:
                msg = None
            except Exception as exc:
                st.broker_errors += 1
                log.warning("receive failed", error=str(exc))
                stop.wait(0.5)
                msg = None
            # this message, then the next ones, until something time-driven is due (timer, alert hand-over,
            # snapshot, status) or _DRAIN_MAX. The next message is asked for with the same blocking timeout,
            # never receive(0): on an empty queue the client reports a timeout by raising, which costs ~60-70 µs
            # of CPU here, and with ticks arriving one at a time that was one raise per tick (a third of a core
            # at 5,000 ticks/s). A message already queued is returned at once either way.
            due = min(next_timer, next_snap)
            if pending:
                due = min(due, handed_at + _STORE_EVERY_S)
            if self._status is not None:
                due = min(due, self._status.next_due)
            n = 0
            while msg is not None:
                st.received += 1
                held.append(msg)
                if not skip or msg.topic_name() not in skip:
                    try:
                        event = decode_event(msg.data())
                    except CodecError as exc:
                        st.decode_errors += 1
                        log.warning("undecodable message skipped", topic=msg.topic_name(), error=str(exc)[:300])
                    else:
                        lag = time.time_ns() - event.ts_recv
                        if len(lags) < _LAG_SAMPLES:
                            lags.append(lag)
                        else:
                            lags[self._lag_pos] = lag
                            self._lag_pos = (self._lag_pos + 1) % _LAG_SAMPLES
                        out = on_event(event) if own is None or self._admit(own, engine, msg, event, stop) else None
                        if out:
                            self._publish(out)
                            pending += out
                            due = min(due, handed_at + _STORE_EVERY_S)  # stored (and webhooks sent) within 50 ms
                n += 1
                if n >= _DRAIN_MAX or monotonic() >= due:
                    break
                try:
                    msg = receive(_RECEIVE_MS)
                except pulsar.Timeout:
                    msg = None
                except Exception:  # reported by the blocking receive above on the next turn
                    msg = None
            now = time.monotonic()
            if own is not None:
                self.stats.symbols_lost += own.drop_lost()
            if now >= next_timer:
                next_timer = now + cfg.timer_interval_s
                out = engine.on_timer(time.time_ns())
                if out and own is not None:  # only the owner of a symbol watches its feed
                    out = [a for a in out if a.symbol in own.epochs]
                if out:
                    self._publish(out, timer=True)
                    pending += out
            # alerts were published at once; storing (and so webhooks) goes in groups: ≤ 50 ms or 500 alerts
            if pending and (now - handed_at >= _STORE_EVERY_S or len(pending) >= 500):
                self._put(pending)
                pending, handed_at = [], now
            if now >= next_snap:
                if self._snap_inflight.is_set():  # the previous snapshot is still committing: keep holding
                    next_snap = now + _SNAPSHOT_RETRY_S
                else:
                    if pending:
                        self._put(pending)
                        pending, handed_at = [], now
                    next_snap = now + cfg.snapshot_interval_s
                    self._snap_inflight.set()
                    self._put(self._snapshot(engine, held))
                    held = []
            self._tick()
        # stopping: the final snapshot covers everything applied (the writer commits them in order)
        if self._writer_error is None:
            if pending:
                self._put(pending)
            self._put(self._snapshot(engine, held))

    def _snapshot(self, engine: AlertEngine, held: list[Any]) -> _Snapshot:
        """The state of the instruments touched since the last one, with the messages it covers (scale-out: of
        the owned symbols only, with their fences)."""
        if self._own is None:
            return _Snapshot(state=engine.snapshot(engine.take_dirty()), msgs=held)
        state, fences, owned = self._own.snapshot(engine)
        return _Snapshot(state=state, msgs=held, fences=fences, held=owned)

    def _admit(self, own: Handover, engine: AlertEngine, msg: Any, event: Event, stop: threading.Event) -> bool:
        """Scale-out: take the symbol over on first sight; False for a message its loaded state already has."""
        sym = event.symbol
        if sym not in own.epochs:
            self.stats.restored_rules += engine.restore(self._retry("take over " + sym, lambda: own.take(sym), stop))
            self.stats.takeovers += 1
        if own.is_replay(msg.topic_name(), sym, position(msg)):
            self.stats.replays_skipped += 1
            return False
        return True

    def _alert_producer(self, bus: Bus) -> pulsar.Producer:
        """The alerts producer: not batching (an alert is sent the moment it exists; alerts are few), blocking
        rather than dropping when the broker is away, never timing a message out (like the bus's producers)."""
        try:
            return bus.client.create_producer(
                self.topic,
                producer_name=f"{self.name}.{self.topic.rsplit('/', 1)[-1]}",
                batching_enabled=False,
                max_pending_messages=self.settings.pulsar.max_pending_messages,
                block_if_queue_full=True,
                send_timeout_millis=0,
            )
        except Exception as exc:
            raise BusError(f"cannot create producer on {self.topic}: {exc}") from exc

    def _publish(self, alerts: list[Alert], timer: bool = False) -> None:
        producer = self._producer
        assert producer is not None
        st = self.stats
        own = self._own
        st.alerts += len(alerts)
        props = alert_properties()

        def done(res: pulsar.Result, _mid: object) -> None:
            if res == pulsar.Result.Ok:
                st.published += 1
            else:
                st.publish_failed += 1

        for a in alerts:
            if own is not None:
                own.send(a.symbol, encode_alert(a), done, props, a.ts_event // 1_000_000, timer)
                continue
            producer.send_async(encode_alert(a), done, properties=props, partition_key=a.symbol,
                                event_timestamp=a.ts_event // 1_000_000)  # fmt: skip

    def _watch_rules(self, ids: tuple[int, ...], stop: threading.Event) -> None:
        """Poll the stored rules' ids until they differ from ``ids`` (then set ``rules_changed``) or stop."""
        now = poll_until_changed(
            lambda: self.store.rule_ids(enabled_only=True),
            lambda v: v == ids,
            every_s=self.settings.alerting.rules_poll_s,
            halt=stop,
            errors=(sqlalchemy.exc.OperationalError, psycopg.OperationalError),
            what="rules",
        )
        if now is not None:
            log.info("alert rules changed; reloading", rules_before=len(ids), rules_now=len(now))
            self.rules_changed.set()

    def _put(self, item: Any) -> None:
        if self._writer_error is None:
            self._handoff.put(item)

    # -- writer thread ---------------------------------------------------------------------------------------
    def _write_loop(self, stop: threading.Event) -> None:
        try:
            while True:
                item = self._handoff.get()
                if item is _DONE:
                    return
                if isinstance(item, _Snapshot):
                    self._commit_snapshot(item, stop)
                    continue
                alerts = list(item)  # coalesce queued alert groups into one transaction (keeping order)
                nxt = None
                while nxt is None:
                    try:
                        nxt = self._handoff.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(nxt, list):
                        alerts += nxt
                        nxt = None
                self._store_alerts(alerts, stop)
                if nxt is _DONE:
                    return
                if isinstance(nxt, _Snapshot):
                    self._commit_snapshot(nxt, stop)
        except BaseException as exc:
            if not isinstance(exc, RetryStopped):
                log.error("alerting writer failed", error=f"{type(exc).__name__}: {exc}")
                self._writer_error = exc
            stop.set()
            while True:  # unblock the main thread; unacknowledged messages are redelivered later
                try:
                    if self._handoff.get(timeout=5) is _DONE:
                        return
                except queue.Empty:
                    return

    def _store_alerts(self, alerts: list[Alert], stop: threading.Event) -> None:
        new = self._retry("store alerts", lambda: self.store.store_alerts(alerts), stop, final=True)
        self.stats.stored += len(new)
        self.stats.duplicates += len(alerts) - len(new)
        if self._webhooks is not None:
            for a in new:
                self._webhooks.submit(a)

    def _commit_snapshot(self, snap: _Snapshot, stop: threading.Event) -> None:
        try:
            self._commit(snap, stop)
        finally:
            self._snap_inflight.clear()

    def _commit(self, snap: _Snapshot, stop: threading.Event) -> None:
        lost: set[str] = set()
        own = self._own
        if own is not None and snap.fences is not None:
            fences, owner = snap.fences, own.owner
            lost = self._retry(
                "store state", lambda: self.store.commit_owned(owner, fences, snap.state, snap.held), stop, final=True
            )
            if lost:
                own.lost.put(lost)
        elif snap.state:
            self._retry("store state", lambda: self.store.store_alerts((), snap.state), stop, final=True)
        self.stats.snapshots += 1
        try:
            if self._producer is not None:
                self._producer.flush()  # alerts published before these messages' acks
            if own is not None:
                own.flush()
        except Exception as exc:
            self.stats.broker_errors += 1
            log.warning("alert producer flush failed", error=str(exc))
        consumer = self._consumer
        assert consumer is not None
        for msg in snap.msgs:
            try:
                if lost and msg.partition_key() in lost:  # applied under a lost claim: to the new owner
                    consumer.negative_acknowledge(msg)
                    continue
                consumer.acknowledge(msg)
                self.stats.acked += 1
            except Exception as exc:  # a lost ack is a redelivery, replayed deterministically
                self.stats.broker_errors += 1
                log.warning("ack failed", error=str(exc))

    # -- helpers ---------------------------------------------------------------------------------------------
    def _retry(self, what: str, fn: Any, stop: threading.Event, *, broker: bool = False, final: bool = False) -> Any:
        """Call ``fn`` until the database (or broker) answers: capped, jittered backoff, stop-aware. With ``final``
        keep trying for a while after stop (the last snapshot is worth a few seconds)."""

        return retry_until_ok(
            fn,
            what=what,
            dependency="broker" if broker else "database",
            errors=(BusError,) if broker else (sqlalchemy.exc.OperationalError, psycopg.OperationalError),
            stop=stop,
            on_error=counting(self.stats, "broker_errors" if broker else "db_errors"),
            grace_after_stop_s=10.0 if final else 0.0,
        )

    def _close(self) -> None:
        for what, fn in (("consumer", self._consumer), ("client", self._bus)):
            if fn is not None:
                try:
                    fn.close()
                except Exception as exc:
                    log.warning(f"{what} close failed", error=str(exc))
        self.store.close()
        self._tick(final=True)

    def counters(self) -> dict[str, Any]:
        self.stats.cpu_s = round(time.process_time(), 3)
        d: dict[str, Any] = asdict(self.stats)
        if self._lag:  # how far behind the ticks' receive time this service evaluates them (recent ticks)
            lag = sorted(self._lag)
            d.update(lag_p50_ms=round(lag[len(lag) // 2] / 1e6, 2))
            d.update(lag_p99_ms=round(lag[len(lag) * 99 // 100] / 1e6, 2))
        if self.engine is not None:
            d.update(ticks=self.engine.stats["ticks"], ignored=self.engine.stats["ignored"])
        if self._sender is not None:
            d.update(self._sender.stats.as_dict())
        return d

    def _tick(self, final: bool = False) -> None:
        if self._status is None or not self._status.due(force=final):
            return
        self._status.write_or_log(
            self.counters(),
            topics=len(self.topics),
            rules=len(self._rules or []),
            subscription=self.settings.alerting.subscription,
            alerts_topic=self.topic,
            state=("reloading" if self.rules_changed.is_set() else "stopped") if final else "running",
        )
