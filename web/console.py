"""The gateway's state: the broker connection, the readers, the hub, the instruments it knows, orders and fills.

:class:`Console` is created on the application's start-up and closed on its clean-up. It knows an instrument
when the registry lists it or a running ingester streams it (its status file says so: ``pulse demo`` streams
its symbols without registering them), follows the control topic to learn about registry changes at once, and
starts the trade and quote readers of every known enabled instrument, so the last values are warm before a
page subscribes. Alerts and paper-trading outputs are read from their service topics (the fills topic from
the start, to answer ``GET /api/orders`` from memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec

from pulse.codec import decode_any
from pulse.errors import PulseError
from pulse.log import get_logger
from pulse.models import unbatched
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import control_topic, service_topic, topic
from web import data
from web.feeds import Message, Readers
from web.hub import Hub, Outbox
from web.leftovers import remove_stale
from web.orders import OrderDesk
from web.protocol import CONFLATED, SERVICE_CHANNELS, ControlMessage, ProtocolError, ack, error, parse_control, pong

log = get_logger(__name__)

_json = msgspec.json.Encoder(decimal_format="string")


class _Order(msgspec.Struct):
    """The two fields of an event the gateway orders by (decoding only them costs ~1 µs)."""

    ts_recv: int = 0
    seq: int = 0


_order = msgspec.json.Decoder(_Order)
MAX_OUTPUTS = 100_000  # paper-trading outputs kept for GET /api/orders


class Console:
    """Everything ``pulse web`` serves from. ``start()`` on the running loop, ``close()`` at shutdown."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.tenant = settings.pulsar.tenant
        self.hub = Hub(max_pending=settings.web.max_pending_trades, direct=settings.web.fanout == "direct")
        self.instruments: dict[tuple[str, str], dict[str, Any]] = {}
        self.outputs: list[Any] = []  # paper-trading executions and positions, deduplicated
        self._seen_exec: set[str] = set()
        self.control_topic = control_topic("instruments", self.tenant)
        self.alerts_topic = service_topic("alerts", settings.alerting.alerts_topic, self.tenant)
        self.fills_topic = service_topic("trading", settings.matching.fills_topic, self.tenant)
        self._service_topics = {"alerts": self.alerts_topic, "fills": self.fills_topic}
        self._seeded: set[str] = set()
        self._newest: dict[str, tuple[int, int]] = {}  # topic → (ts_recv, seq) of the newest event passed on
        self._refresh_task: asyncio.Task[None] | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self._bus: Any = None
        self.readers: Readers | None = None
        self.desk: OrderDesk | None = None  # paper orders sent over HTTP (web.writes)
        self.stale_removed = 0  # subscriptions of dead gateways removed after start (web.leftovers)
        self.started_at = time.time()
        self.ready = False
        self.problems: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        from pulse.bus import Bus

        loop = asyncio.get_running_loop()
        self._bus = await asyncio.to_thread(Bus, self.settings, self.endpoints.pulsar_url)
        self.readers = Readers(self._bus.client, loop, self._on_batch, home=self.settings.home)
        self.desk = OrderDesk(self._bus.client, self.settings)
        await self.readers.ensure(self.control_topic)  # before the registry read: no change falls between
        await self.readers.ensure(self.alerts_topic)
        await self.readers.ensure(self.fills_topic, earliest=True)
        await self.refresh()
        self.ready = True
        # after readiness: a dead gateway's leftovers cost the broker a backlog, not this gateway its clients.
        # Each removal is a blocking subscribe + unsubscribe; on a broker that keeps a killed consumer they can
        # each take the client's operation timeout, so a restarted gateway once served only after minutes.
        self._cleanup_task = asyncio.create_task(self._remove_stale())

    async def _remove_stale(self) -> None:
        try:
            assert self.readers is not None
            removed = await asyncio.to_thread(remove_stale, self._bus.client, self.settings.home,
                                              self.readers.subscription)  # fmt: skip
        except Exception as exc:  # the records stay for the next start
            log.warning("removing dead gateways' subscriptions failed", error=str(exc)[:200])
            return
        self.stale_removed += len(removed)

    async def close(self) -> None:
        for task in (self._refresh_task, self._cleanup_task):
            if task is not None:
                task.cancel()
        if self.desk is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.desk.close)
        if self.readers is not None:
            await asyncio.to_thread(self.readers.close)
        if self._bus is not None:
            await asyncio.to_thread(self._bus.close)

    # -- instruments ------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Re-read the registry and the ingesters' status files; start readers of new enabled instruments."""
        try:
            known = await asyncio.to_thread(self._known_instruments)
            self.problems = [p for p in self.problems if not p.startswith("registry")]
        except PulseError as exc:
            self.problems = [p for p in self.problems if not p.startswith("registry")] + [f"registry: {exc}"]
            log.warning("instrument refresh failed", error=str(exc))
            return
        self.instruments = known
        for inst in known.values():
            if inst["enabled"]:
                for ch in ("trade", "quote"):
                    if ch in inst["topic_channels"]:
                        await self._ensure_market(inst, ch)

    def _known_instruments(self) -> dict[tuple[str, str], dict[str, Any]]:
        from pulse.registry import RegistryReader
        from pulse.status import list_status
        from pulse.venues import instrument_topics, venues

        out: dict[tuple[str, str], dict[str, Any]] = {}
        known = venues()
        with RegistryReader(self.endpoints.database_url) as reg:
            for r in reg.list():
                doc = r.as_dict()
                doc["source"] = "registry"
                doc["topic_channels"] = sorted({t.rsplit(".", 1)[-1] for t in instrument_topics(r, self.tenant)})
                out[(r.venue, r.symbol)] = doc
        for st in list_status(self.settings.home):
            v = known.get(st.get("venue") or "")
            if v is None or not st.get("alive"):
                continue
            for sym in st.get("subscriptions") or st.get("last_tick") or {}:
                if (v.name, sym) not in out:
                    chans = sorted({t for c in v.default_channels for t in v.topics_of(c)} | {"status"})
                    out[(v.name, sym)] = {"venue": v.name, "symbol": sym, "namespace": v.namespace, "enabled": True,
                                          "channels": list(v.default_channels), "topic_channels": chans,
                                          "source": "ingester"}  # fmt: skip
        return out

    async def _ensure_market(self, inst: dict[str, Any], channel: str) -> str:
        assert self.readers is not None
        t = topic(inst["namespace"], inst["venue"], inst["symbol"], channel, self.tenant)
        await self.readers.ensure(t)
        if channel in ("trade", "quote") and t not in self._seeded:
            self._seeded.add(t)
            try:
                frames = await asyncio.to_thread(data.last_frames, self.endpoints.database_url, inst["venue"],
                                                 inst["symbol"])  # fmt: skip
            except Exception as exc:  # the database is optional for live prices
                log.warning("last value from the database failed", topic=t, error=str(exc))
                frames = {}
            if channel in frames:
                self.hub.seed(t, frames[channel])
        return t

    def _schedule_refresh(self) -> None:
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self.refresh())

    async def lookup(self, venue: str, symbol: str) -> dict[str, Any]:
        """The known instrument ``venue``/``symbol`` (any venue spelling); ProtocolError when unknown."""
        from pulse.venues import resolve

        try:
            v, r = resolve(venue, symbol)
        except PulseError as exc:
            raise ProtocolError(str(exc)) from None
        inst = self.instruments.get((v.name, r.symbol))
        if inst is None:
            await self.refresh()
            inst = self.instruments.get((v.name, r.symbol))
        if inst is None:
            raise ProtocolError(f"{v.name}:{r.symbol} is not in the instrument registry (POST /api/instruments)")
        return inst

    # -- broker messages --------------------------------------------------------------------------------
    def _on_batch(self, batch: list[Message]) -> None:
        hub = self.hub
        for t, payload, props, _publish_ms in batch:
            if t == self.control_topic:
                self._schedule_refresh()
            elif t == self.alerts_topic:
                self._on_alert(payload)
            elif t == self.fills_topic:
                self._on_output(payload)
            else:
                channel = t.rsplit(".", 1)[-1]
                conflate = channel in CONFLATED
                for frame in self._frames(payload, props):
                    if self._is_new(t, frame):  # encoded once, whatever the number of clients
                        hub.dispatch(t, hub.encode(frame), conflate=conflate, remember=channel != "status")

    def _is_new(self, topic_name: str, frame: str) -> bool:
        """False for an event not newer, by ``(ts_recv, seq)``, than one already passed on for its topic.

        pulsar-lite can redeliver messages (measured: see :mod:`web.feeds` and the README design notes), so the
        gateway drops repeats itself. ``ts_recv`` comes first because an ingester restart
        starts ``seq`` again while its clock moves on."""
        try:
            o = _order.decode(frame)
        except msgspec.MsgspecError:
            return True
        key = (o.ts_recv, o.seq)
        last = self._newest.get(topic_name)
        if last is not None and key <= last:
            self.hub.stats.duplicates += 1
            return False
        self._newest[topic_name] = key
        return True

    def _frames(self, payload: bytes, props: dict[str, str]) -> list[str]:
        """The JSON text frames of one market message: a JSON event as it is, anything else re-encoded."""
        if props.get("format", "json") == "json" and props.get("type") != "quote_batch":
            try:
                return [payload.decode()]
            except UnicodeDecodeError:
                pass
        try:
            return [_json.encode(e).decode() for e in unbatched(decode_any(payload, props))]
        except PulseError as exc:
            self.hub.stats.undecodable += 1
            log.warning("undecodable message", error=str(exc)[:200])
            return []

    def _on_alert(self, payload: bytes) -> None:
        try:
            doc = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            self.hub.stats.undecodable += 1
            return
        frame = _json.encode({"type": "alert", **doc}).decode()
        self.hub.dispatch(self.alerts_topic, self.hub.encode(frame), conflate=False, remember=False)

    def _on_output(self, payload: bytes) -> None:
        from consumers.matching.messages import Execution, decode_output

        try:
            out = decode_output(payload)
        except Exception:
            self.hub.stats.undecodable += 1
            return
        key = ("e:" if type(out) is Execution else "p:") + out.exec_id
        if key in self._seen_exec:  # a repeat after a matching-service restart
            return
        self._seen_exec.add(key)
        self.outputs.append(out)
        if self.desk is not None and type(out) is Execution:
            self.desk.feed(out)
        if len(self.outputs) > MAX_OUTPUTS:
            del self.outputs[: len(self.outputs) - MAX_OUTPUTS]
        self.hub.dispatch(self.fills_topic, self.hub.encode(payload.decode()), conflate=False, remember=False)

    # -- one client's control messages ------------------------------------------------------------------
    async def control(self, box: Outbox, text: str | bytes) -> None:
        """Apply one control message from a client; everything it answers goes through its outbox."""
        try:
            msg = parse_control(text)
            if msg.op == "ping":
                box.put(pong(msg))
                return
            venue, symbol, topics = await self._topics_of(msg, box)
        except ProtocolError as exc:
            self.hub.stats.bad_messages += 1
            box.put(error(str(exc), exc.op, exc.req_id))
            return
        if msg.op == "subscribe":
            snapshot = self.hub.subscribe(box, topics)  # no await from here: nothing falls between
            box.put(ack(msg, venue, symbol))
            for frame in snapshot:
                box.put_frame(frame)
        else:
            self.hub.unsubscribe(box, topics)
            box.put(ack(msg, venue, symbol))

    async def _topics_of(self, msg: ControlMessage, box: Outbox) -> tuple[str | None, str | None, list[str]]:
        topics = [self._service_topics[c] for c in msg.channels if c in SERVICE_CHANNELS]
        market = [c for c in msg.channels if c not in SERVICE_CHANNELS]
        if not market:
            return None, None, topics
        try:
            inst = await self.lookup(msg.venue or "", msg.symbol or "")
        except ProtocolError as exc:
            held = self._held(box, msg, market) if msg.op == "unsubscribe" else None
            if held:  # an instrument removed from the registry can still be unsubscribed
                return held[0], held[1], topics + held[2]
            raise ProtocolError(str(exc), msg.op, msg.req_id) from None
        missing = [c for c in market if c not in inst["topic_channels"]]
        if missing:
            raise ProtocolError(
                f"{inst['venue']}:{inst['symbol']} has no {missing[0]} stream (it streams "
                f"{', '.join(inst['topic_channels'])})",
                msg.op,
                msg.req_id,
            )
        for c in market:
            if msg.op == "subscribe":
                topics.append(await self._ensure_market(inst, c))
            else:
                topics.append(topic(inst["namespace"], inst["venue"], inst["symbol"], c, self.tenant))
        return inst["venue"], inst["symbol"], topics

    def _held(self, box: Outbox, msg: ControlMessage, channels: list[str]) -> tuple[str, str, list[str]] | None:
        """The topics ``box`` holds of the instrument ``msg`` names, whether or not the registry still lists it."""
        from pulse.topics import parse_topic
        from pulse.venues import resolve

        try:
            v, r = resolve(msg.venue or "", msg.symbol or "")
        except PulseError:
            return None
        held = []
        for t in box.topics:
            with contextlib.suppress(PulseError):
                name = parse_topic(t)
                if (name.venue, name.symbol) == (v.name, r.symbol) and name.channel in channels:
                    held.append(t)
        return (v.name, r.symbol, held) if held else None

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "problems": list(self.problems),
            "readers": len(self.readers.topics) if self.readers else 0,
            "received": self.readers.received if self.readers else 0,
            "orders_sent": self.desk.sent if self.desk else 0,
            "stale_removed": self.stale_removed,
            **self.hub.stats.as_dict(),
        }
