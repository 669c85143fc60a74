"""Rules, alerts and engine state in PostgreSQL (SQLAlchemy 2 Core).

Tables (created idempotently — ``CREATE … IF NOT EXISTS`` under a transaction-scoped advisory lock, so several
alerting processes and ``pulse alerts add`` can start together):

``alert_rules``
    one row per rule: ``id`` (identity), ``kind``, ``venue``, ``symbol``, ``name``, ``params`` (JSONB: every
    other field of the rule, validated again by :func:`~consumers.alerting.rules.make_rule` when read),
    ``enabled``, ``created_at``. Rules are removed by deleting the row.
``alerts``
    one row per alert, unique on ``alert_id`` (deterministic, see :mod:`consumers.alerting.messages`), so a
    replay after a restart inserts nothing twice; ``payload`` is the alert event as published.
``alert_state``
    the engine's snapshot, one msgpack blob per instrument (``venue``, ``symbol`` primary key).
``alert_owners``
    scale-out only (Key_Shared, see :mod:`consumers.alerting.handover`): per symbol, the service instance that
    owns it (``owner``), a fencing ``epoch`` bumped by every take-over, the position of the last message of
    each of its topics that the stored state covers (``positions``) and the number of alerts it produced
    (``alert_seq``: the Pulsar sequence id of its last alert).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from consumers.alerting.messages import Alert
from consumers.alerting.rules import Rule, RuleError, make_rule, rule_params

metadata = MetaData()

rules_table = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("venue", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("params", JSONB, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

alerts_table = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("alert_id", Text, nullable=False, unique=True),
    Column("rule_id", Integer, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("venue", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("ts_event", BigInteger, nullable=False),
    Column("condition", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("threshold", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

state_table = Table(
    "alert_state",
    metadata,
    Column("venue", Text, primary_key=True),
    Column("symbol", Text, primary_key=True),
    Column("state", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

owners_table = Table(
    "alert_owners",
    metadata,
    Column("symbol", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("positions", JSONB, nullable=False),  # {topic: [partition, ledger, entry, batch index]}
    Column("alert_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


class Claim(msgspec.Struct, frozen=True):
    """A symbol taken over: the fencing epoch, what the stored state covers, and that state."""

    epoch: int
    positions: dict[str, list[int]]
    alert_seq: int
    state: dict[tuple[str, str], bytes]


class Fence(msgspec.Struct, frozen=True):
    """What a snapshot commits for one owned symbol (only while ``epoch`` is still the symbol's)."""

    epoch: int
    positions: dict[str, list[int]]
    alert_seq: int


_INSERT_ALERTS = (
    pg_insert(alerts_table).on_conflict_do_nothing(index_elements=["alert_id"]).returning(alerts_table.c.alert_id)
)
_upsert = pg_insert(state_table)
_UPSERT_STATE = _upsert.on_conflict_do_update(
    index_elements=["venue", "symbol"], set_={"state": _upsert.excluded.state, "updated_at": func.now()}
)
_LOCK_KEY = 0x50554C5345414C  # "PULSEAL": serialises schema creation between processes


def db_engine(url: str, *, pooled: bool = False) -> Engine:
    """A SQLAlchemy engine over psycopg 3 for a ``postgresql://`` URL (as :class:`pulse.runtime.Endpoints` has).

    ``pooled``: keep two connections open (the service writes several times a second; a connection per
    transaction cost more than the write). Unpooled for one-shot CLI commands."""
    if not pooled:
        return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool)
    return create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), pool_size=2, max_overflow=2, pool_pre_ping=True
    )


class AlertStore:
    """Rules, alerts and state. Thread-safe (one connection per call). :meth:`ensure_schema` before use."""

    def __init__(self, url: str, *, pooled: bool = False) -> None:
        self.engine = db_engine(url, pooled=pooled)

    def ensure_schema(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
            metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- rules --------------------------------------------------------------------------------------------
    def add_rule(self, rule: Rule) -> Rule:
        """Insert ``rule`` (its ``id`` is ignored); return it with the id the database assigned."""
        with self.engine.begin() as conn:
            rid = conn.execute(
                insert(rules_table)
                .values(kind=rule.kind, venue=rule.venue, symbol=rule.symbol, name=rule.name,
                        params=rule_params(rule), enabled=rule.enabled)
                .returning(rules_table.c.id)
            ).scalar_one()  # fmt: skip
        return msgspec.structs.replace(rule, id=rid)

    def rules(self, *, enabled_only: bool = False) -> list[Rule]:
        """Every stored rule, by id. A row that no longer validates raises :class:`RuleError` naming its id."""
        q = select(rules_table).order_by(rules_table.c.id)
        if enabled_only:
            q = q.where(rules_table.c.enabled)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out: list[Rule] = []
        for row in rows:
            fields: dict[str, Any] = dict(row["params"])
            fields.update({k: row[k] for k in ("id", "venue", "symbol", "name", "enabled")})
            try:
                out.append(make_rule(row["kind"], fields))
            except RuleError as exc:
                raise RuleError(f"stored rule #{row['id']} is invalid: {exc}") from exc
        return out

    def rule_ids(self, *, enabled_only: bool = True) -> tuple[int, ...]:
        """The ids of the stored (enabled) rules, in order: cheap enough to poll for changes."""
        q = select(rules_table.c.id).order_by(rules_table.c.id)
        if enabled_only:
            q = q.where(rules_table.c.enabled)
        with self.engine.connect() as conn:
            return tuple(conn.execute(q).scalars())

    def remove_rules(self, ids: Sequence[int]) -> list[int]:
        """Delete rules by id; return the ids that existed."""
        with self.engine.begin() as conn:
            res = conn.execute(delete(rules_table).where(rules_table.c.id.in_(list(ids))).returning(rules_table.c.id))
            return sorted(r[0] for r in res)

    # -- alerts -------------------------------------------------------------------------------------------
    def store_alerts(self, alerts: Iterable[Alert], state: dict[tuple[str, str], bytes] | None = None) -> list[Alert]:
        """Insert alerts (those already stored are skipped) and upsert engine state, in ONE transaction.

        Returns the alerts that were new — the ones to deliver to webhooks (a replay delivers nothing twice)."""
        alerts = list(alerts)
        new: list[Alert] = []
        # one fixed statement each, executed with many parameter sets: SQLAlchemy compiles it once (cached) and
        # batches the rows into multi-row VALUES itself ("insertmanyvalues", RETURNING included) — a statement
        # with the rows inlined was compiled anew on every call and cost more CPU than the database round trip
        with self.engine.begin() as conn:
            if alerts:
                inserted = {r[0] for r in conn.execute(_INSERT_ALERTS, [_alert_row(a) for a in alerts])}
                new = [a for a in alerts if a.alert_id in inserted]
            if state:
                conn.execute(_UPSERT_STATE, [{"venue": v, "symbol": s, "state": b} for (v, s), b in state.items()])
        return new

    def alerts(self, *, rule_ids: Sequence[int] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        q = select(alerts_table).order_by(alerts_table.c.ts_event, alerts_table.c.id).limit(limit)
        if rule_ids is not None:
            q = q.where(alerts_table.c.rule_id.in_(list(rule_ids)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    # -- scale-out: ownership of symbols -----------------------------------------------------------------
    def claim(self, symbol: str, owner: str) -> Claim:
        """Take ``symbol`` over for ``owner``: bump its epoch (the previous owner's next commit then finds it
        fenced off) and return the stored state of its instruments with the positions and alert count it covers.
        Waits for a commit of the previous owner in flight (row lock), so it reads that commit's result."""
        ins = pg_insert(owners_table).values(symbol=symbol, owner=owner, epoch=1, positions={}, alert_seq=0)
        stmt = ins.on_conflict_do_update(
            index_elements=["symbol"],
            set_={"owner": owner, "epoch": owners_table.c.epoch + 1, "updated_at": func.now()},
        ).returning(owners_table.c.epoch, owners_table.c.positions, owners_table.c.alert_seq)
        with self.engine.begin() as conn:
            epoch, positions, seq = conn.execute(stmt).one()
            rows = conn.execute(select(state_table).where(state_table.c.symbol == symbol)).mappings().all()
        blobs = {(r["venue"], r["symbol"]): bytes(r["state"]) for r in rows}
        return Claim(epoch=epoch, positions=dict(positions), alert_seq=seq, state=blobs)

    def commit_owned(
        self,
        owner: str,
        fences: dict[str, Fence],
        state: dict[tuple[str, str], bytes],
        held: dict[str, int] | None = None,
    ) -> set[str]:
        """One transaction: for each symbol in ``fences`` still owned by ``owner`` at that epoch, record its
        positions and alert count and upsert its instruments' state; return the symbols lost to a take-over
        (nothing of theirs is written). ``held``: other symbols believed owned (symbol → epoch), only checked."""
        lost: set[str] = set()
        with self.engine.begin() as conn:
            for sym, f in sorted(fences.items()):
                done = conn.execute(
                    update(owners_table)
                    .where(owners_table.c.symbol == sym, owners_table.c.owner == owner,
                           owners_table.c.epoch == f.epoch)
                    .values(positions=f.positions, alert_seq=f.alert_seq, updated_at=func.now())
                ).rowcount  # fmt: skip
                if done != 1:
                    lost.add(sym)
            rows = [
                {"venue": v, "symbol": s, "state": b} for (v, s), b in state.items() if s in fences and s not in lost
            ]
            if rows:
                conn.execute(_UPSERT_STATE, rows)
            others = {k: e for k, e in (held or {}).items() if k not in fences}
            if others:
                q = select(owners_table.c.symbol, owners_table.c.owner, owners_table.c.epoch)
                now = {r[0]: (r[1], r[2]) for r in conn.execute(q.where(owners_table.c.symbol.in_(sorted(others))))}
                lost |= {k for k, e in others.items() if now.get(k) != (owner, e)}
        return lost

    # -- state --------------------------------------------------------------------------------------------
    def load_state(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        wanted = set(keys)
        if not wanted:
            return {}
        venues = sorted({v for v, _ in wanted})
        with self.engine.connect() as conn:
            rows = conn.execute(select(state_table).where(state_table.c.venue.in_(venues))).mappings().all()
        return {(r["venue"], r["symbol"]): bytes(r["state"]) for r in rows if (r["venue"], r["symbol"]) in wanted}


def _alert_row(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "rule_id": a.rule_id,
        "kind": a.kind,
        "venue": a.venue,
        "symbol": a.symbol,
        "time": datetime.fromtimestamp(a.ts_event / 1e9, UTC),
        "ts_event": a.ts_event,
        "condition": a.condition,
        "value": a.value,
        "threshold": a.threshold,
        "message": a.message,
        "payload": msgspec.to_builtins(a),
    }
