"""``pulse symbols add|remove|enable|disable``: validate, provision, record, announce — in that order.

1. **Validate** everything first (venue, the venue's symbol rules, channels, precisions — asked of the venue
   registry, :mod:`pulse.venues`): a bad request is refused before anything changes.
2. **Provision** the topics: on a real cluster through the Pulsar admin REST API (idempotent steps; the first
   failure stops with the step and HTTP status named, and nothing is recorded); on the embedded broker, which
   has no admin API, topics are created by their first producer, and the result says so.
3. **Record** the change in the registry (one transaction).
4. **Announce** it on the control topic, where running ingesters and the sink pick it up within a second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from control_plane.provision import EMBEDDED_NOTE, StepResult, provision_base, provision_instrument
from control_plane.pulsar_admin import PulsarAdmin
from control_plane.registry import Instrument, Registry
from pulse.bus import Bus
from pulse.control import InstrumentCommand, Op, encode
from pulse.errors import SymbolError
from pulse.log import get_logger
from pulse.settings import Settings
from pulse.topics import control_topic, parse_topic
from pulse.venues import Venue, check_channels, instrument_topics, resolve

log = get_logger(__name__)

Step = dict[str, Any]
#: provisioning hook: (settings, instrument) → step results; None means "no admin API: created on first use"
Provisioner = Callable[[Settings, Instrument], list[Step]]


def plan_instrument(
    venue_name: str,
    text: str,
    channels: list[str] | None = None,
    *,
    price_precision: int | None = None,
    size_precision: int | None = None,
) -> tuple[Venue, Instrument]:
    """Validate a request into the registry row it would write (nothing is changed)."""
    v, r = resolve(venue_name, text)
    chs = check_channels(v, channels)
    for name, value in (("--price-precision", price_precision), ("--size-precision", size_precision)):
        if value is not None and not 0 <= value <= 18:
            raise SymbolError(f"{name} must be between 0 and 18, got {value}")
    return v, Instrument(
        venue=v.name,
        symbol=r.symbol,
        venue_symbol=r.venue_symbol,
        asset_class=r.asset_class,
        namespace=v.namespace,
        price_precision=r.price_precision if price_precision is None else price_precision,
        size_precision=r.size_precision if size_precision is None else size_precision,
        channels=chs,
        enabled=True,
    )


def announce(bus: Bus, inst: Instrument, op: Op) -> InstrumentCommand:
    """Publish the change on the control topic (synchronously: it is on the broker when this returns)."""
    cmd = InstrumentCommand(
        op=op,
        venue=inst.venue,
        symbol=inst.symbol,
        venue_symbol=inst.venue_symbol,
        namespace=inst.namespace,
        channels=inst.channels,
    )
    producer = bus.producer(control_topic("instruments", bus.settings.pulsar.tenant))
    producer.send(encode(cmd), partition_key=cmd.key, properties={"op": op, "venue": inst.venue})
    return cmd


class SymbolOps:
    """The four changes, over one registry and one bus. ``provision`` is None on the embedded broker."""

    def __init__(self, settings: Settings, registry: Registry, bus: Bus, provision: Provisioner | None) -> None:
        self.settings = settings
        self.registry = registry
        self.bus = bus
        self.provision = provision

    def add(
        self,
        venue_name: str,
        text: str,
        channels: list[str] | None = None,
        *,
        price_precision: int | None = None,
        size_precision: int | None = None,
    ) -> dict[str, Any]:
        v, inst = plan_instrument(
            venue_name, text, channels, price_precision=price_precision, size_precision=size_precision
        )
        tenant = self.settings.pulsar.tenant
        steps: list[Step] = []
        if self.provision is None:
            steps.append({"step": "topics", "result": EMBEDDED_NOTE})
        else:
            steps += self.provision(self.settings, inst)
        row, result = self.registry.upsert(inst)
        steps.append({"step": "registry", "result": result})
        announce(self.bus, row, "add")  # even when unchanged: re-announcing is harmless and heals a missed one
        who = f"running {v.name} ingesters subscribe" if v.live else "backfills may use it"
        steps.append({"step": "control", "result": f"published add: {who}; the sink stores its topics"})
        return {"instrument": row.as_dict(), "topics": instrument_topics(row, tenant), "steps": steps}

    def remove(self, venue_name: str, text: str) -> dict[str, Any]:
        v, r = resolve(venue_name, text)
        row = self.registry.remove(v.name, r.symbol)
        announce(self.bus, row, "remove")
        return {
            "instrument": row.as_dict(),
            "steps": [
                {"step": "registry", "result": "removed"},
                {"step": "control", "result": "published remove: running ingesters unsubscribe"},
                {"step": "topics", "result": "kept: stored data and retained messages are not deleted"},
            ],
        }

    def set_enabled(self, venue_name: str, text: str, enabled: bool) -> dict[str, Any]:
        v, r = resolve(venue_name, text)
        row, changed = self.registry.set_enabled(v.name, r.symbol, enabled)
        announce(self.bus, row, "enable" if enabled else "disable")
        return {
            "instrument": row.as_dict(),
            "steps": [
                {"step": "registry", "result": ("enabled" if enabled else "disabled") if changed else "unchanged"},
                {"step": "control", "result": f"published {'enable' if enabled else 'disable'}"},
            ],
        }


@contextlib.contextmanager
def open_symbol_ops(settings: Settings) -> Iterator[SymbolOps]:
    """Registry + bus (+ the admin API provisioner when ``pulsar.admin_url`` is set), closed on exit."""
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(settings)
    provision = provision_via_admin if settings.pulsar.admin_url else None
    registry = Registry(ep.database_url)
    try:
        registry.ensure_schema()
        bus = Bus(settings, ep.pulsar_url)
        try:
            yield SymbolOps(settings, registry, bus, provision)
        finally:
            bus.close()
    finally:
        registry.close()


async def provision_layout(admin: PulsarAdmin, settings: Settings, instruments: list[Instrument]) -> list[StepResult]:
    """Through the admin REST API: the tenant and namespaces (idempotent, checked every time), then each
    instrument's partitioned topics and schemas. The first failure raises an ``AdminError`` naming its step."""
    tenant = settings.pulsar.tenant
    steps = await provision_base(admin, settings)
    for inst in instruments:
        steps += await provision_instrument(
            admin, inst.namespace, inst.venue, inst.symbol,
            [parse_topic(t).channel for t in instrument_topics(inst, tenant)],
            tenant=tenant, register_schemas=settings.pulsar.codec == "json", partitions=settings.pulsar.partitions,
        )  # fmt: skip
    return steps


def provision_via_admin(settings: Settings, inst: Instrument) -> list[Step]:
    """The :data:`Provisioner` of a real cluster (``pulsar.admin_url`` set). A historical instrument is also
    checked against the Pulsar IO JDBC sink: the sink reads a topics pattern, so it follows the new quote topic
    without a change (Apache Pulsar cannot change a sink's input topics); the step says so."""
    import asyncio

    async def go() -> list[StepResult]:
        from control_plane.jdbc_sink import NAMESPACE, sink_follows_instrument

        async with PulsarAdmin.from_settings(settings) as admin:
            steps = await provision_layout(admin, settings, [inst])
            if inst.namespace == NAMESPACE and "quote" in inst.channels:  # the Pulsar IO JDBC sink, if any
                follows = await sink_follows_instrument(admin, settings.pulsar.tenant, inst.venue, inst.symbol)
                steps += [follows] if follows else []
            return steps

    return [{"step": "admin", "result": str(r)} for r in asyncio.run(go())]


def ensure_registered(settings: Settings, venue_name: str, text: str) -> str:
    """Record ``text`` of ``venue_name`` in the registry unless it is there (a backfill calls this, so the sink,
    which follows the ``historical`` namespace by default, stores what it publishes). An instrument already
    recorded is left as it is (a disabled one stays disabled). Never raises: without a reachable database the
    answer says why nothing was recorded."""
    from pulse.errors import PulseError

    try:
        v, inst = plan_instrument(venue_name, text)
        with open_symbol_ops(settings) as ops:
            row = ops.registry.get(v.name, inst.symbol)
            if row is not None:
                return f"already registered ({'enabled' if row.enabled else 'disabled: the sink skips it'})"
            ops.add(venue_name, text)
            return f"registered {v.name} {inst.symbol} ({v.namespace}): the sink stores it"
    except (PulseError, OSError) as exc:
        log.warning("backfilled instrument not recorded in the registry", venue=venue_name, symbol=text, error=str(exc))
        return f"not registered ({exc}); run `pulse symbols add {venue_name} {text}` so the sink stores it"
    except Exception as exc:  # the database answered something unexpected: the backfill itself goes on
        log.warning("backfilled instrument not recorded in the registry", venue=venue_name, error=str(exc))
        return f"not registered ({type(exc).__name__}); run `pulse symbols add {venue_name} {text}`"
