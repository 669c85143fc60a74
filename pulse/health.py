"""``pulse status``: broker, database and service health in one report (exit 1 when unhealthy)."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

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


def collect_health(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"healthy": True, "lines": []}
    lines: list[str] = report["lines"]
    st = Runtime(settings).status()
    report["runtime"] = st.as_dict()
    try:
        ep = resolve_endpoints(settings)
    except PulseError as exc:
        report["healthy"] = False
        lines.append(f"UNHEALTHY  {exc}")
        return report
    ok, detail = _broker_ok(settings, ep.pulsar_url)
    report["broker"] = {"url": ep.pulsar_url, "ok": ok, "detail": detail}
    if ok and ep.broker_metrics_url:
        try:
            urllib.request.urlopen(ep.broker_metrics_url, timeout=3).read(64)
            report["broker"]["metrics"] = ep.broker_metrics_url
        except OSError as exc:
            report["broker"]["metrics_error"] = str(exc)
    lines.append(f"{'ok' if ok else 'UNHEALTHY':<10} broker {ep.pulsar_url} ({detail})")
    report["healthy"] &= ok
    try:
        mode = database_mode(ep.database_url)
        report["database"] = {"ok": True, "mode": mode}
        lines.append(f"{'ok':<10} database ({mode} mode)")
    except Exception as exc:
        report["database"] = {"ok": False, "error": str(exc)}
        report["healthy"] = False
        lines.append(f"{'UNHEALTHY':<10} database: {exc}")
    now = time.time()
    services = []
    for doc in list_status(settings.home):
        stopped = doc.get("state") == "stopped"
        alive = doc["alive"]
        ages = {s: round(now - ts / 1e9, 1) for s, ts in doc.get("last_tick", {}).items()}
        services.append({**doc, "last_tick_age_s": ages})
        state = "running" if alive else ("stopped" if stopped else "DEAD")
        if not alive and not stopped:
            report["healthy"] = False
        oldest = max(ages.values()) if ages else None
        lines.append(
            f"{'ok' if alive or stopped else 'UNHEALTHY':<10} {doc['name']} {state} pid {doc['pid']}"
            + (f", oldest last tick {oldest}s ago" if oldest is not None else "")
        )
    report["services"] = services
    return report
