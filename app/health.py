"""``pulse status``: broker, database and service health in one report (exit 1 when unhealthy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pulse.broker_metrics import TopicMetrics, stalled
from pulse.errors import PulseError
from pulse.runtime import Runtime, resolve_endpoints
from pulse.settings import Settings
from pulse.status import list_status


def _broker_ok(settings: Settings, url: str, timeout: float = 5.0) -> tuple[bool, str]:
    import pulsar

    from pulse.bus import client_logger

    client = None
    try:
        client = pulsar.Client(
            url,
            operation_timeout_seconds=int(timeout),
            connection_timeout_ms=int(timeout * 1000),
            logger=client_logger(settings),
        )
        client.get_topic_partitions("persistent://market-data/control/health")
        return True, "connected"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            client.close()


def database_mode(url: str) -> str:
    """The active mode: ``timescaledb+toolkit``, ``timescaledb`` or ``postgresql`` (installed extensions), with
    ``(timescaledb available)`` when the server has the extension but the sink has not installed it yet."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        installed = {r[0] for r in conn.execute("SELECT extname FROM pg_extension").fetchall()}
        available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
    if "timescaledb" in installed:
        return "timescaledb+toolkit" if "timescaledb_toolkit" in installed else "timescaledb"
    return "postgresql (timescaledb available)" if "timescaledb" in available else "postgresql"


def collect_health(
    settings: Settings, *, max_tick_age_s: float = 60.0, max_sink_lag_s: float = 120.0, max_stall_s: float = 30.0
) -> dict[str, Any]:
    """Everything ``pulse status`` reports; ``healthy`` is False when any check fails.

    Unhealthy: broker or database unreachable; a service that died without saying it stopped; a running
    ingester whose instrument has not ticked for ``max_tick_age_s`` while its market is open (FX is exempt at
    the weekend); a sink whose newest stored event is ``max_sink_lag_s`` older than the newest tick a running
    ingester published (data flows in but is not stored); a subscription with a backlog and a consumer
    connected that had nothing dispatched or acknowledged for ``max_stall_s`` (a stuck consumer: the broker's
    metrics on pulsar-lite, the admin API's subscription stats on Apache Pulsar); a sink that says it is stalled.
    """
    report: dict[str, Any] = {"healthy": True, "lines": []}
    lines: list[str] = report["lines"]

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'ok' if ok else 'UNHEALTHY':<10} {text}")
        if not ok:
            report["healthy"] = False

    st = Runtime(settings).status()
    report["runtime"] = st.as_dict()
    try:
        ep = resolve_endpoints(settings)
    except PulseError as exc:
        check(False, str(exc))
        _endpoints(report, settings, check)  # services on other hosts still answer for themselves
        return report
    ok, detail = _broker_ok(settings, ep.pulsar_url)
    kind = "Apache Pulsar" if ep.broker_kind == "apache" else "pulsar-lite"
    report["broker"] = {"url": ep.pulsar_url, "ok": ok, "detail": detail, "kind": ep.broker_kind}
    if settings.pulsar.admin_url:
        from pulse.runtime.apache import broker_version

        report["broker"]["version"] = broker_version(settings.pulsar.admin_url, settings.pulsar_token())
        kind += f" {report['broker']['version'] or '(version unknown)'}"
    check(ok, f"broker {ep.pulsar_url} ({kind}; {detail})")
    if ep.embedded and st.broker_running and st.broker and st.broker.get("url") == ep.pulsar_url:
        report["broker"]["storage"] = broker_storage_report(settings, st.broker, check)
    if settings.pulsar.admin_url:
        health = _admin_health(settings)
        report["broker"]["admin"] = health
        check(health["healthy"], f"broker admin API {settings.pulsar.admin_url} ({health['detail']})")
    metrics = (
        _admin_topics(settings, ep.database_url, lines)
        if settings.pulsar.admin_url
        else _topics(settings, ep.broker_metrics_url, lines)
    )
    report["topics"] = _topic_lines(settings, metrics, lines)
    report["stalled"] = []
    for s in stalled(_mine(settings, metrics), max_stall_s):
        report["stalled"].append({**vars(s), "detail": s.describe()})
        check(False, s.describe())
    try:
        mode = database_mode(ep.database_url)
        report["database"] = {"ok": True, "mode": mode}
        check(True, f"database ({mode} mode)")
    except Exception as exc:
        report["database"] = {"ok": False, "error": str(exc)}
        check(False, f"database: {exc}")
    _services(report, settings.home, max_tick_age_s, max_sink_lag_s, check)
    _endpoints(report, settings, check)
    return report


def broker_storage_report(settings: Settings, broker: dict[str, Any], check: Any) -> dict[str, Any]:
    """The embedded pulsar-lite broker's disk, as the broker process sees it: unhealthy under
    ``runtime.broker_min_free_mb`` free, and while its log since its start shows a write that failed for lack
    of space.

    pulsar-lite 0.2.0 after such a failure (tests/faults/test_disk_full.py): once space returns it may carry on,
    keep failing every write, or acknowledge messages it cannot read back (subscriptions stop at the first of them);
    a broker stopped while its disk is full and started once space is back loses nothing (the publishers resend
    what it never confirmed). Hence the advice in the lines."""
    from pulse.runtime.storage import broker_storage, enospc_in_log, storage_problem

    data_dir, pid = broker.get("data_dir"), broker.get("pid")
    if not data_dir or not pid:
        return {}
    min_free = settings.runtime.broker_min_free_mb
    try:
        storage = broker_storage(data_dir, pid)
    except OSError as exc:
        check(False, f"broker storage {data_dir}: cannot read its free space ({exc})")
        return {"path": data_dir, "error": str(exc)}
    problem = storage_problem(storage, min_free) if min_free else ""
    full = enospc_in_log(broker["log"], broker.get("log_offset", 0)) if broker.get("log") else None
    if problem:
        advice = "; free space, or stop the broker first if it already failed a write (below)" if full else ""
        check(False, problem + advice)
    else:
        check(True, f"broker storage {storage.describe()}")
    if full:
        check(
            False,
            f'broker log: {full["count"]} writes failed with "No space left on device" since it started '
            f"(first {full['first']}, latest {full['last']}); pulsar-lite 0.2.0 may not recover from that by "
            "itself (it can keep failing writes, or acknowledge messages it cannot read back): stop it "
            "(`pulse down`), free space, `pulse up` (README: Fault injection)",
        )
    return {**storage.as_dict(), "min_free_mb": min_free, "problem": problem, "enospc": full}


def _endpoints(report: dict[str, Any], settings: Settings, check: Any) -> None:
    """Ask each service's /readyz: those listed in ``status.services`` (any host; each must answer) and the
    running local services that serve metrics (their status file names the URL)."""
    urls = {u.rstrip("/"): "listed" for u in settings.status.services}
    for doc in report.get("services", []):
        if doc.get("alive") and doc.get("state") != "stopped" and doc.get("metrics_url"):
            urls.setdefault(str(doc["metrics_url"]).rstrip("/"), "local")
    out = []
    for url, origin in urls.items():
        code, doc, error = _readyz(url, settings.status.timeout_s)
        name = doc.get("service", "?") if doc else "?"
        entry = {"url": url, "origin": origin, "service": name, "status": code, "ready": code == 200, **(doc or {})}
        if error:
            entry["error"] = error
            check(False, f"{url} not answering ({error})")
        elif code == 200:
            check(True, f"{name} at {url} ready: {doc.get('summary', '')}")
        else:
            failing = ",".join(k for k, ok in (doc or {}).get("checks", {}).items() if not ok) or f"HTTP {code}"
            check(False, f"{name} at {url} NOT READY ({failing}): {(doc or {}).get('summary', '')}")
        out.append(entry)
    report["endpoints"] = out


def _readyz(url: str, timeout: float) -> tuple[int, dict[str, Any] | None, str]:
    """(HTTP status, the JSON body, an error when it did not answer)."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as r:  # http(s): status.services is validated
            return r.status, json.loads(r.read()), ""
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read()), ""
        except ValueError:
            return exc.code, None, ""
    except (OSError, ValueError) as exc:
        return 0, None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def _admin_health(settings: Settings) -> dict[str, Any]:
    import asyncio

    from control_plane.pulsar_admin import PulsarAdmin

    async def go() -> Any:
        async with PulsarAdmin.from_settings(settings, retries=0) as admin:
            return await admin.broker_health()

    try:
        h = asyncio.run(go())
        return {"healthy": h.healthy, "status": h.status, "detail": h.detail}
    except PulseError as exc:
        return {"healthy": False, "status": 0, "detail": str(exc)}


def _admin_topics(settings: Settings, db_url: str, lines: list[str]) -> dict[str, TopicMetrics]:
    """A real cluster: the admin API's (partitioned-)stats of every enabled registry instrument's topics."""
    import asyncio

    from control_plane.pulsar_admin import AdminError, PulsarAdmin
    from pulse.broker_metrics import SubscriptionMetrics
    from pulse.registry import RegistryReader
    from pulse.venues import instrument_topics

    try:
        with RegistryReader(db_url) as reg:
            names = [t for r in reg.list(enabled_only=True) for t in instrument_topics(r, settings.pulsar.tenant)]
    except PulseError as exc:
        lines.append(f"{'?':<10} topic stats: {exc}")
        return {}

    async def go() -> dict[str, TopicMetrics]:
        out: dict[str, TopicMetrics] = {}
        async with PulsarAdmin.from_settings(settings, retries=1) as admin:
            for name in names:
                try:
                    st = await admin.stats(name)
                except AdminError as exc:
                    if exc.status == 404:
                        continue  # not created yet (no producer so far)
                    raise
                subs = {k: float(v.msg_backlog) for k, v in st.subscriptions.items()}
                out[name] = TopicMetrics(name, st.msg_rate_in, st.msg_rate_out, float(st.msg_in_counter),
                                         float(sum(subs.values())), subs)  # fmt: skip
                out[name].subs = {
                    k: SubscriptionMetrics(
                        backlog=float(v.msg_backlog),
                        consumers=float(v.consumers),
                        last_consumed=v.last_consumed_ms / 1000,
                        last_acked=v.last_acked_ms / 1000,
                    )
                    for k, v in st.subscriptions.items()
                }
        return out

    try:
        return asyncio.run(go())
    except PulseError as exc:
        lines.append(f"{'?':<10} topic stats unavailable: {exc}")
        return {}


def _topics(settings: Settings, metrics_url: str, lines: list[str]) -> dict[str, TopicMetrics]:
    """The embedded broker: per-topic rates and backlog from its Prometheus metrics (pulsar-lite exports
    Pulsar's own topic metric names): rates and backlog are informational; a stalled subscription is not."""
    from pulse.broker_metrics import fetch_topic_metrics

    if not metrics_url:
        return {}
    try:
        topics = fetch_topic_metrics(metrics_url)
    except OSError as exc:
        lines.append(f"{'?':<10} topic metrics unavailable at {metrics_url}: {exc}")
        return {}
    return topics


def _mine(settings: Settings, topics: dict[str, TopicMetrics]) -> dict[str, TopicMetrics]:
    tenant = f"persistent://{settings.pulsar.tenant}/"
    return {t: m for t, m in sorted(topics.items()) if t.startswith(tenant)}


def _topic_lines(settings: Settings, topics: dict[str, TopicMetrics], lines: list[str]) -> dict[str, Any]:
    if not topics:
        return {}
    tenant = f"persistent://{settings.pulsar.tenant}/"
    mine = _mine(settings, topics)
    rate_in = sum(m.rate_in for m in mine.values())
    backlog = sum(m.backlog for m in mine.values())
    lines.append(f"{'info':<10} {len(mine)} topics, {rate_in:.0f} msg/s in, backlog {backlog:.0f} messages")
    for t, m in mine.items():
        if m.rate_in or m.backlog:
            name = t[len(tenant) :]
            lines.append(f"{'':<10}   {name:<44} in {m.rate_in:7.1f}/s out {m.rate_out:7.1f}/s backlog {m.backlog:.0f}")
    return {t: m.as_dict() for t, m in mine.items()}


def _services(report: dict[str, Any], home: Any, max_tick_age_s: float, max_sink_lag_s: float, check: Any) -> None:
    from datetime import UTC, datetime

    from pulse.venues import expects_ticks

    now = time.time()
    when = datetime.fromtimestamp(now, UTC)
    services = []
    newest_published = 0.0
    sinks = []
    for doc in list_status(home):
        stopped = doc.get("state") == "stopped"
        alive = doc["alive"]
        venue = doc.get("venue")
        ages = {s: round(now - ts / 1e9, 1) for s, ts in doc.get("last_tick", {}).items()}
        entry = {**doc, "last_tick_age_s": ages}
        services.append(entry)
        # a service that left a status file here should run: stopped cleanly or not, it is not running
        state = "running" if alive else ("STOPPED" if stopped else "DEAD")
        retire = f" (retired? pulse status --forget {doc['name']})" if not alive else ""
        check(alive, f"{doc['name']} {state} pid {doc['pid']}{retire}")
        counters = doc.get("counters") or {}
        if alive and counters.get("unconfirmed_s"):  # a publisher whose broker stopped confirming (pulse.bus)
            waited, pending = counters["unconfirmed_s"], counters.get("pending", 0)
            check(False, f"  {doc['name']}: the broker has not confirmed a publish for {waited:.0f} s, "
                         f"{pending:,} pending: is its storage full?")  # fmt: skip
        for problem in doc.get("problems") or []:  # what a service itself reports as unhealthy (the monitor)
            check(not alive, f"  {doc['name']}: {problem}")
        if "last_event_ns" in doc:
            sinks.append(entry)
        if not (alive and venue):
            continue
        if ages:
            newest_published = max(newest_published, now - min(ages.values()))
        live = set(doc.get("subscriptions") or ages)  # what it streams now (removed symbols keep old ticks)
        expected = expects_ticks(venue, when)  # one venue, one market-hours answer for all its instruments
        for sym, age in sorted(ages.items()):
            if sym not in live:
                continue
            stale = expected and age > max_tick_age_s
            when_ = describe_time(now - age, now)
            check(not stale, f"  {venue} {sym} last tick {when_}" + ("" if expected else " (market closed)"))
    for entry in sinks:
        stored = entry.get("last_event_ns") or {}
        newest = max(stored.values()) / 1e9 if stored else 0.0
        lag = round(now - newest, 1) if newest else None
        entry["sink_lag_s"] = lag
        entry["newest_stored"] = datetime.fromtimestamp(newest, UTC).isoformat() if newest else None
        behind = newest_published and (newest_published - newest) > max_sink_lag_s and entry["alive"]
        ago = describe_time(newest, now) if newest else "none yet"
        check(not behind, f"  {entry['name']} newest stored event {ago}")
        if entry["alive"] and (entry.get("counters") or {}).get("stalled"):
            check(False, f"  {entry['name']} stalled: {entry.get('stall') or 'its subscription is not draining'}")
    report["services"] = services


def describe_time(ts: float, now: float) -> str:
    """When an event happened, as a person reads it: ``4.2s ago``, ``12 min ago``, else the UTC time with the
    hours since (``2026-07-01 12:00 UTC, 5 h ago``), or for data older than two days (a backfill's history)
    ``2026-07-01 12:00 UTC (historical)`` rather than an age in millions of seconds."""
    from datetime import UTC, datetime

    age = now - ts
    if age < 120:
        return f"{max(age, 0.0):.1f}s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp}, {age / 3600:.0f} h ago" if age < 2 * 86400 else f"{stamp} (historical)"


def forget_service(home: Path, name: str) -> None:
    """Delete the status file of a service retired on purpose, so ``pulse status`` stops expecting it. Refused
    (:class:`ConfigError`) for a name with no status file or a service that is running."""
    from pulse.errors import ConfigError
    from pulse.status import read_status

    known = sorted(p.stem for p in (home / "run").glob("*.json"))
    if name not in known:
        raise ConfigError(f"--forget {name}: no such service in {home / 'run'} (known: {', '.join(known) or 'none'})")
    doc = read_status(home, name)
    if doc is not None and doc["alive"]:
        raise ConfigError(f"--forget {name}: it is running (pid {doc['pid']}); stop it first")
    (home / "run" / f"{name}.json").unlink(missing_ok=True)
