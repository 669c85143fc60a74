"""``pulse demo``: the whole pipeline on the embedded default, with a live view and a summary.

Local venues → ingesters → pulsar-lite → PostgreSQL sink → PostgreSQL, each stage in its own process (a
producer and a consumer in one busy Python process fight over the GIL). Which venues run, and how, the venue
registry says (:class:`pulse.venues.DemoPlan`): the demo names no venue. Children run in their own session so
the terminal's Ctrl-C reaches only the demo, which then stops them in order: the ingesters first (SIGTERM: they
flush), then the sink once it has drained, then the venues. The demo talks to its children only through the
CLI and their status files.

It leaves the user's state as it found it: it runs in a home of its own (``<home>/demo``) on an embedded broker
and database of its own (free ports; never ``pulsar.url``/``database.url`` or the runtime of ``pulse up``), so
its alert rules, paper orders, positions and status files never reach the user's; it stops that runtime and
deletes its database at the end, keeping only its logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.demo_reconcile import differences, table_counts
from pulse.errors import ConfigError
from pulse.instruments import parse_instrument
from pulse.log import get_logger
from pulse.runtime import Runtime, attach_runtime, resolve_endpoints
from pulse.runtime.procs import free_port, terminate, wait_for_port
from pulse.settings import Settings
from pulse.status import read_status
from pulse.venues import DemoPlan, Venue, venues

log = get_logger(__name__)

SINK = "sink-postgres"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                terminate(self.proc.pid, 1)
                self.proc.wait(5)
        return self.proc.returncode


#: every child's environment clears these: the demo's services use the demo's own embedded broker and database,
#: whatever the user's settings file or environment name
_OWN_RUNTIME_ENV = {
    "PULSE_PULSAR__URL": "",
    "PULSE_PULSAR__ADMIN_URL": "",
    "PULSE_DATABASE__URL": "",
    "PULSE_DATABASE__URL_FILE": "",
}


def own_home(settings: Settings) -> Settings:
    """The demo's settings: home ``<home>/demo`` and an embedded runtime of its own on free ports."""
    ports = {k: free_port() for k in ("broker_port", "broker_metrics_port", "broker_admin_port", "postgres_port")}
    return settings.with_overrides(
        "pulse demo (its own home and runtime)",
        runtime={"home": str(settings.home / "demo"), **ports},
        pulsar={"url": "", "admin_url": ""},
        database={"url": "", "url_file": ""},
    )


@dataclass
class DemoState:
    children: list[Child] = field(default_factory=list)
    started_runtime: bool = False


def _spawn(
    settings: Settings, name: str, args: list[str], config: str | None, env: dict[str, str] | None = None
) -> Child:
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}.log"
    cmd = [sys.executable, "-m", "cli", "--home", str(settings.home)]
    if config:
        cmd += ["--config", config]
    out = open(path, "ab")  # noqa: SIM115 — the child owns it for its lifetime
    # Children run in their own session (the terminal's Ctrl-C reaches only the demo, which stops them in
    # order), and get SIGTERM from the kernel if the demo itself dies, so none can be orphaned.
    proc = subprocess.Popen(
        cmd + args,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **_OWN_RUNTIME_ENV, **(env or {})},
    )
    out.close()
    return Child(name, proc, path)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent (the demo) exits."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _plans(
    symbols: list[str] | None, fx: bool, backfill: bool, only: list[str] | None = None
) -> list[tuple[Venue, DemoPlan, list[str]]]:
    """The registry's venues the demo runs (see :class:`pulse.venues.DemoPlan`), main venue first, with the
    symbols each streams; refused (before anything starts) when a chosen venue cannot run here."""
    chosen: list[tuple[Venue, DemoPlan, list[str]]] = []
    known = venues()
    if only is not None:  # --venues: exactly these (any group), the first live one the main venue unless a "" one is
        bad = [n for n in only if n not in known or known[n].demo is None]
        if bad or not only:
            offered = ", ".join(n for n, v in known.items() if v.demo is not None)
            raise ConfigError(f"--venues: no demo plan for {', '.join(bad) or 'an empty list'} (choose from {offered})")
    for v in known.values():
        plan = v.demo
        if plan is None:
            continue
        if only is not None:
            if v.name not in only:
                continue
        elif (plan.group == "fx" and not fx) or (plan.group == "backfill" and not backfill) or plan.group == "optional":
            continue
        if plan.check is not None:
            plan.check()
        syms = (
            [parse_instrument(x, v.name).symbol for x in symbols]
            if symbols and plan.group == ""
            else list(plan.symbols)
        )
        chosen.append((v, plan, syms))
    chosen.sort(key=lambda c: (c[1].group != "", c[1].group, c[0].name))
    if only is not None and chosen and chosen[0][1].group != "":  # no "" venue named: the first live one leads
        lead = next((c for n in only for c in chosen if c[0].name == n and c[1].ingest is not None), None)
        if lead is not None:
            chosen.remove(lead)
            chosen.insert(0, lead)
    if not chosen or (only is None and chosen[0][1].group != "") or chosen[0][1].ingest is None:
        raise ConfigError("no venue offers the demo a live main venue (pulse.venues: DemoPlan with group '')")
    return chosen


def _start_console(settings: Settings, config: str | None, state: DemoState, stages: list[Child]) -> str:
    """`pulse web` as one more child: on web.port when it is free, else on any free port; returns its URL."""
    import socket

    port = settings.web.port
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            port = free_port()
    child = _spawn(settings, "console", ["web", "--host", "127.0.0.1", "--port", str(port)], config)
    state.children.append(child)
    stages.append(child)
    if not wait_for_port("127.0.0.1", port, 30, pid=child.proc.pid):
        raise RuntimeError(f"the console did not start; see {child.log_path}")
    url = f"http://127.0.0.1:{port}/"
    print(f"console: {url}", file=sys.stderr, flush=True)
    return url


def run_demo(
    settings: Settings,
    *,
    duration: float | None,
    rate: float,
    faults: bool,
    symbols: list[str] | None = None,
    fx: bool = True,
    backfill: bool = False,
    live: bool = True,
    config: str | None = None,
    consumers: bool = True,
    after_up: Callable[[Settings], object] | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """``after_up`` runs once the runtime is up (the CLI provisions Apache Pulsar's tenant and namespaces).
    ``settings`` are the user's: the demo runs in a home and on a runtime of its own (:func:`own_home`)."""
    from app import demo_consumers

    plans = _plans(symbols, fx, backfill, only)
    main_venue, _, main_symbols = plans[0]
    ingester_services = [v.service for v, p, _ in plans if p.ingest is not None and v.service]
    settings = own_home(settings)
    state = DemoState()
    rt = Runtime(settings)
    if not rt.status().running:  # (a demo killed with SIGKILL leaves its runtime up: that one is reused and stopped)
        rt.up(progress=lambda m: print(m, file=sys.stderr))
    state.started_runtime = True
    if after_up is not None:
        after_up(settings)
    ep = resolve_endpoints(attach_runtime(settings))
    # a fresh run: old status files would mislead the view
    for name in (*ingester_services, SINK, *demo_consumers.CONSUMERS):
        with contextlib.suppress(FileNotFoundError):
            (settings.home / "run" / f"{name}.json").unlink()
    interrupted = False

    def on_sigint(*_: object) -> None:
        nonlocal interrupted
        interrupted = True

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, on_sigint) for sig in stop_signals}
    try:
        # the local venues of the live venues, then the sink, then their ingesters (in registry order)
        stages: list[Child] = []
        ingesters: list[Child] = []
        local_ports: dict[str, int] = {}
        for v, plan, syms in plans:
            if plan.ingest is None:
                continue
            port = local_ports[v.name] = free_port()
            child = _spawn(settings, f"venue-{v.name}", plan.simulate(port, rate, syms, faults), config, plan.env)
            state.children.append(child)
            stages.append(child)
            if not wait_for_port("127.0.0.1", port, 60, pid=child.proc.pid):
                raise RuntimeError(f"local {v.name} venue did not start; see {child.log_path}")
        all_instruments = [f"{v.name}:{s}" for v, _, syms in plans for s in syms]
        sources = [a for v, _, syms in plans for a in ("--symbols", f"{v.namespace}/{v.name}={','.join(syms)}")]
        sink = _spawn(settings, "sink", ["sink", "run", *sources], config)
        state.children.append(sink)
        stages.append(sink)
        for v, plan, syms in plans:
            if plan.ingest is None:
                continue
            ing = _spawn(settings, f"ingester-{v.name}", plan.ingest(local_ports[v.name], syms), config, plan.env)
            state.children.append(ing)
            stages.append(ing)
            ingesters.append(ing)
        trader: demo_consumers.PaperTrader | None = None
        services: list[Child] = []
        if consumers:
            demo_consumers.install_rules(ep.database_url, main_venue.name, main_symbols)
            services = [
                _spawn(settings, "alerting", ["consumers", "alerting", "run"], config),
                _spawn(settings, "matching", demo_consumers.matching_args(main_venue.name, main_symbols), config),
            ]
            state.children += services
            stages += services
            trader = demo_consumers.PaperTrader(settings, main_venue.name, main_symbols)
            # on a busy 2-core machine the services can take seconds to start: wait, so the view is complete
            deadline = time.monotonic() + 60
            while not all(read_status(settings.home, c.name) for c in services):
                for c in services:
                    if c.proc.poll() is not None:
                        raise RuntimeError(f"{c.name} exited with {c.proc.returncode}; see {c.log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the consumers did not start within 60 s; see {settings.home / 'logs'}")
                time.sleep(0.2)
        console_url = _start_console(settings, config, state, stages)
        backfilled: dict[str, Any] = {}
        for v, plan, _ in plans:
            if plan.backfill is not None:
                backfilled = _backfill(settings, config, state, v, plan)
        t0 = time.monotonic()  # --duration counts from when the whole pipeline runs (and the backfill is done)
        if trader is not None:
            trader.start()
        view = _LiveView(enabled=live)

        def snapshot() -> dict[str, Any]:
            return _snapshot(settings, ingester_services, time.monotonic() - t0, backfilled)

        with view:
            while not interrupted and (duration is None or time.monotonic() - t0 < duration):
                for c in stages:
                    if c.proc.poll() is not None:
                        raise RuntimeError(f"{c.name} exited with {c.proc.returncode}; see {c.log_path}")
                snap = snapshot()
                view.update({**snap, **demo_consumers.snapshot(settings, trader)} if consumers else snap)
                if trader is not None:
                    trader.tick()
                time.sleep(0.5)
            ing_rcs = [i.stop() for i in ingesters]
            svc_rcs = {c.name: c.stop() for c in services}
            # let the sink drain what the ingester published before it stops
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                snap = snapshot()
                view.update(snap)
                if snap["sink_received"] >= snap["published_data"]:
                    break
                time.sleep(0.3)
            sink_rc = sink.stop()
            for c in stages:
                c.stop()
        snap = snapshot()
        snap["instruments"] = all_instruments
        snap["console"] = console_url
        snap["logs"] = str(settings.home / "logs")
        if consumers:
            snap.update(demo_consumers.snapshot(settings, trader))
        snap["exit_codes"] = {
            **{c.name: rc for c, rc in zip(ingesters, ing_rcs, strict=True)},
            **svc_rcs,
            "sink": sink_rc,
        }
        snap["rows_in_database"] = table_counts(ep.database_url, sorted(snap["sink_stored"]))
        snap["differences"] = differences(snap)  # published vs stored: [] when they reconcile
        snap["ok"] = (
            all(rc == 0 for rc in ing_rcs)
            and all(rc == 0 for rc in svc_rcs.values())
            and sink_rc == 0
            and not snap["differences"]
            and (not backfill or bool(backfilled.get("ok")))
        )
        if live:
            _print_summary(snap)
        return snap
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for c in reversed(state.children):
            c.stop(5)
        if state.started_runtime:
            rt.down(purge=True)  # its database too: the next demo starts from nothing, the user's state is untouched


def _snapshot(
    settings: Settings, services: list[str], elapsed: float, backfilled: dict[str, Any] | None = None
) -> dict[str, Any]:
    docs = [d for d in (read_status(settings.home, n) for n in services) if d]
    snk = read_status(settings.home, SINK) or {}
    sc: dict[str, Any] = snk.get("counters", {})
    total: dict[str, int] = {}
    topics: dict[str, int] = {}
    last_price: dict[str, str] = {}
    for d in docs:
        for k, v in d.get("counters", {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
        topics.update(d.get("counters", {}).get("topics", {}))
        venue = d.get("venue", "")  # keyed by instrument id: two venues may list the same symbol
        last_price.update({f"{venue}:{sym}": px for sym, px in d.get("last_price", {}).items()})
    if backfilled and backfilled.get("topic"):
        # broker messages (each carries up to 1,000 ticks); the tick count is on the backfill line
        topics[backfilled["topic"]] = int(backfilled.get("messages", backfilled.get("published", 0)))
    # what the sink consumes: every data topic but tickers (their top of book is on the quote topic too)
    data_topics = {t: n for t, n in topics.items() if "/deadletter/" not in t and not t.endswith(".ticker")}
    return {
        "elapsed_s": round(elapsed, 1),
        "published": total.get("published", 0) + int((backfilled or {}).get("messages", 0)),
        "published_data": sum(data_topics.values()),
        "stored": sc.get("stored_total", 0),  # rows this run's sink inserted (duplicates excluded)
        "sink_stored": sc.get("stored", {}),
        "sink_received": sc.get("received", 0),
        "duplicates": sc.get("duplicates", 0),
        "frames": total.get("frames", 0),
        "parse_errors": total.get("parse_errors", 0),
        "checksum_failures": total.get("checksum_failures", 0),
        "reconnects": total.get("reconnects", 0),
        "gaps": total.get("gaps", 0),
        "dead_letters": total.get("dead_letters", 0),
        "backfill": {k: v for k, v in (backfilled or {}).items() if not isinstance(v, (list, dict))},
        "topics": topics,
        "last_price": last_price,
    }


def _backfill(settings: Settings, config: str | None, state: DemoState, v: Venue, plan: DemoPlan) -> dict[str, Any]:
    """Serve the venue's historical files locally and backfill them through Pulsar (its ``backfill`` command
    line, which prints a JSON summary)."""
    import json

    assert plan.backfill is not None
    port = free_port()
    server = _spawn(settings, f"venue-{v.name}", plan.simulate(port, 0.0, list(plan.symbols), False), config)
    state.children.append(server)
    if not wait_for_port("127.0.0.1", port, 60, pid=server.proc.pid):
        raise RuntimeError(f"local {v.name} server did not start; see {server.log_path}")
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "--home",
        str(settings.home),
        *(["--config", config] if config else []),
        *plan.backfill(port),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    server.stop()
    if res.returncode != 0 and not res.stdout.strip():
        raise RuntimeError(f"backfill failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout)


class _LiveView:
    """A rich live table; a no-op with ``enabled=False`` (``--json``). Rates are over the last ~2 s."""

    WINDOW_S = 2.0

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._live: Any = None
        self._history: deque[tuple[float, dict[str, int]]] = deque()

    def __enter__(self) -> _LiveView:
        if self.enabled:
            from rich.live import Live

            from pulse.log import console

            # the log's console (stderr): a log line prints above the view, never through it
            self._live = Live(refresh_per_second=4, transient=False, console=console())
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def _rates(self, topics: dict[str, int]) -> dict[str, float]:
        now = time.monotonic()
        self._history.append((now, dict(topics)))
        while len(self._history) > 2 and now - self._history[1][0] >= self.WINDOW_S:
            self._history.popleft()
        t0, old = self._history[0]
        dt = now - t0
        return {t: (n - old.get(t, 0)) / dt for t, n in topics.items()} if dt > 0.2 else {}

    def update(self, snap: dict[str, Any]) -> None:
        if self._live is None:
            return
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        rates = self._rates(snap["topics"])
        table = Table(title=f"Pulse demo — {snap['elapsed_s']}s (Ctrl-C stops it cleanly)", title_justify="left")
        table.add_column("topic")
        table.add_column("published", justify="right")
        table.add_column("msg/s", justify="right")
        table.add_column("last price", justify="right")
        for t, n in sorted(snap["topics"].items()):
            name = t.split("://", 1)[-1]
            price = snap["last_price"].get(_instrument_of(name), "") if name.endswith((".trade", ".quote")) else ""
            table.add_row(name, f"{n:,}", f"{rates.get(t, 0):,.0f}", price)
        stored = ", ".join(f"{k} {v:,}" for k, v in sorted(snap["sink_stored"].items()))
        lines = [
            f"stored this run: {snap['stored']:,} rows ({stored or 'nothing yet'}) · duplicates skipped "
            f"{snap['duplicates']:,}",
            f"reconnects {snap['reconnects']} · gaps marked {snap['gaps']} · checksum failures "
            f"{snap['checksum_failures']} · parse errors {snap['parse_errors']} · dead letters {snap['dead_letters']}",
        ]
        if "alerts" in snap:
            lines.append(
                f"alerts raised {snap['alerts']:,} (stored {snap['alerts_stored']:,}) · paper orders sent "
                f"{snap['paper_orders']:,}, fills {snap['paper_fills']:,}"
            )
        if snap["backfill"]:
            b = snap["backfill"]
            lines.append(
                f"backfill {b.get('code')}: {b.get('ticks_published', 0):,} ticks published, "
                f"{b.get('hours_downloaded', 0)} hours downloaded, {b.get('hours_skipped', 0)} already done"
            )
        self._live.update(Group(table, Text("\n".join(lines))))


def _instrument_of(topic_local: str) -> str:
    """``market-data/crypto/kraken.BTC-USD.trade`` → ``kraken:BTC/USD``."""
    parts = topic_local.rsplit("/", 1)[-1].split(".")
    return f"{parts[0]}:{parts[1].replace('-', '/')}" if len(parts) == 3 else ""


def _print_summary(snap: dict[str, Any]) -> None:
    from rich.console import Console

    c = Console()
    verdict = (
        "[green]ok[/] (published and stored reconcile)"
        if snap["ok"]
        else f"[red]NOT OK[/] (see {snap.get('logs', 'the logs')})"
    )
    stored = ", ".join(f"{k} {v:,}" for k, v in sorted(snap["sink_stored"].items()))
    c.print(f"[bold]summary[/] after {snap['elapsed_s']}s: {verdict}")
    for diff in snap.get("differences", []):
        c.print(f"  [red]does not reconcile[/]: {diff}", highlight=False)
    bad = {name: rc for name, rc in snap.get("exit_codes", {}).items() if rc != 0}
    if bad:
        c.print(f"  [red]exit codes[/]: {', '.join(f'{n} {rc}' for n, rc in bad.items())}", highlight=False)
    c.print(f"  published  {snap['published']:,} messages ({snap['published_data']:,} on topics the sink stores)")
    c.print(f"  stored     {snap['stored']:,} rows ({stored}); {snap['duplicates']:,} redelivered duplicates skipped")
    c.print(
        f"  faults     reconnects {snap['reconnects']}, gaps marked {snap['gaps']}, checksum failures "
        f"{snap['checksum_failures']}, parse errors {snap['parse_errors']}, dead letters {snap['dead_letters']}"
    )
    if "alerts" in snap:
        c.print(
            f"  consumers  {snap['alerts']:,} alerts ({snap['alerts_stored']:,} stored), {snap['paper_orders']:,} "
            f"paper orders, {snap['paper_fills']:,} fills"
        )
    if snap["backfill"]:
        b = snap["backfill"]
        c.print(
            f"  backfill   {b.get('code')}: {b.get('ticks_published', 0):,} ticks, {b.get('hours_skipped', 0)} "
            "hours already done"
        )
