"""The fault suite's harness: the whole chain as it runs in production, one fault at a time, and its accounting.

A local Kraken venue whose market moves whether anyone listens or not (``always_on``: what it made is its list
``made``; a subscriber's trade snapshot holds the last 50 trades of a pair, as Kraken's does) → ``pulse ingest
kraken`` → the broker → ``pulse sink run`` → PostgreSQL, plus the consumers or the gateway a case needs. Every
daemon is a real ``pulse`` process started and stopped here by pid, its output in files under the case's own
directory (a pipe nobody reads would block a chatty process).

At the end the venue stops trading and the database is compared with the tape: ``sent`` (the venue's trades),
``stored`` (rows), ``duplicates`` (rows beyond one per trade id), ``lost`` (sent, never stored), ``extra``
(stored, never sent), the gap markers stored for the case's instruments and the time to recover (from the
fault's end until a trade the venue made after it is in the database).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingesters.kraken.simulator import FaultPlan, KrakenSimulator
from pulse.runtime import resolve_endpoints
from pulse.runtime.procs import free_port, pid_alive
from pulse.settings import Settings

REPO = Path(__file__).resolve().parents[2]

#: every case's outcome, in the order run; printed as a table at the end of the session (tests/conftest.py)
RESULTS: list[Outcome] = []


@dataclass
class Outcome:
    case: str
    broker: str
    sent: int
    stored: int
    duplicates: int
    lost: int
    extra: int
    gaps: int
    recover_s: float | None
    note: str = ""
    lost_sample: list[str] = field(default_factory=list)  # a few lost trades (symbol:id), for the report

    def row(self) -> str:
        rec = "-" if self.recover_s is None else f"{self.recover_s:.1f}"
        return (f"{self.case:<26} {self.broker:<6} {self.sent:>6} {self.stored:>6} {self.duplicates:>4} "
                f"{self.lost:>5} {self.gaps:>4} {rec:>8}  {self.note}")  # fmt: skip


HEADER = f"{'case':<26} {'broker':<6} {'sent':>6} {'stored':>6} {'dup':>4} {'lost':>5} {'gaps':>4} {'recover':>8}  note"


def table(results: list[Outcome]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *(r.row() for r in results)])


def save_results(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in RESULTS], indent=2) + "\n")


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.2,
             diagnose: Callable[[], str] | None = None) -> Any:  # fmt: skip
    end = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > end:
            more = f"\n{diagnose()}" if diagnose is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{more}")
        time.sleep(every)
    return value


class Venue:
    """A local venue (Kraken's by default) on its own event loop in a thread (the test reads its tape directly)."""

    def __init__(self, make: Callable[..., Any] = KrakenSimulator, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.make, self.kwargs = make, kwargs
        self.sim: Any

    def start(self) -> Any:
        self.thread.start()

        async def start() -> Any:
            sim = self.make(**self.kwargs)  # paused until the chain first flows: see Chain.start
            await sim.start()
            return sim

        self.sim = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self.sim

    def stop_trading(self) -> None:
        """No more trades from now on (book updates and heartbeats go on)."""

        def stop() -> None:
            self.sim.max_trades = 0

        self.loop.call_soon_threadsafe(stop)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Daemon:
    name: str
    args: tuple[str, ...]
    env: dict[str, str]
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    pids: list[int] = field(default_factory=list)


class Chain:
    """Venue → ingester → broker → sink → PostgreSQL (and the daemons a case adds), for one case."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        case: str,
        *,
        pairs: int = 4,
        rate: float = 40.0,
        channels: str = "trade",
        faults: FaultPlan | None = None,
        ingest_env: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.case = settings, case
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:6].upper()
        self.tag = tag.lower()
        self.symbols = [f"F{i}{tag}/USD" for i in range(pairs)]
        self.db = resolve_endpoints(settings).database_url
        self.venue = Venue(symbols=self.symbols, rate=rate, seed=11, faults=faults)
        self.channels = channels
        self.ingest_env = {"PULSE_KRAKEN__BACKOFF_INITIAL_S": "0.2", "PULSE_KRAKEN__BACKOFF_MAX_S": "2",
                           **(ingest_env or {})}  # fmt: skip
        self.daemons: dict[str, Daemon] = {}

    # ------------------------------------------------------------------------------------------ processes

    def add(self, name: str, *args: str, env: dict[str, str] | None = None, metrics: bool = False) -> Daemon:
        port = free_port() if metrics else None
        margs = ("--metrics-port", str(port)) if port else ()
        d = Daemon(name, (*args, *margs), env or {}, port)
        self.daemons[name] = d
        self.spawn(name)
        return d

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        d = self.daemons[name]
        d.runs += 1
        base = self.dir / f"{name}.{d.runs}"
        with open(f"{base}.out", "wb") as out, open(f"{base}.err", "wb") as err:
            d.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "--home", str(self.settings.home), *d.args],
                cwd=REPO,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **d.env},
            )
        d.pids.append(d.proc.pid)
        return d.proc

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, no flush, no final status write."""
        proc = self.daemons[name].proc
        assert proc is not None and proc.poll() is None, f"{name} is not running: {self.tail(name)}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def terminate(self, name: str, timeout: float = 45.0) -> int:
        proc = self.daemons[name].proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return -9

    def output(self, name: str, run: int | None = None) -> str:
        d = self.daemons[name]
        return (self.dir / f"{name}.{run or d.runs}.out").read_text(errors="replace")

    def tail(self, name: str, n: int = 3000) -> str:
        d = self.daemons[name]
        return (self.dir / f"{name}.{d.runs}.err").read_text(errors="replace")[-n:]

    def alive(self, name: str) -> bool:
        proc = self.daemons[name].proc
        return proc is not None and proc.poll() is None

    # ------------------------------------------------------------------------------------------ the chain

    def start(self) -> None:
        """The venue, the sink and the ingester; returns once trades reach the database. From then on the
        venue's market moves whether anyone listens or not (before, a slow start would count as a loss)."""
        self.venue.start()
        self.start_sink()
        self.start_ingester()
        self.flowing()
        if hasattr(self.venue.sim, "always_on"):
            self.venue.sim.always_on = True

    venue_name = "kraken"

    def start_sink(self) -> None:
        source = f"crypto/{self.venue_name}={','.join(self.symbols)}"
        env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{self.tag}", "PULSE_SINK__MAX_LATENCY_MS": "50",
               "PULSE_SINK__RETRY_MAX_S": "1", "PULSE_SINK__STALL_S": "10"}  # fmt: skip
        self.add("sink", "sink", "run", "--source", source, "--no-follow", "--json", env=env)

    def start_ingester(self) -> None:
        args = ("ingest", "kraken", "--url", self.venue.sim.url, "--symbols", ",".join(self.symbols),
                "--channels", self.channels, "--json")  # fmt: skip
        self.add("ingest", *args, env=self.ingest_env)

    @property
    def tape(self) -> list[tuple[str, str]]:
        return [(t.symbol, str(t.trade_id)) for t in list(self.venue.sim.made)]

    def mark(self) -> int:
        """A point on the tape: trades after it were made after now."""
        return len(self.venue.sim.made)

    def rows(self) -> list[tuple[str, str]]:
        try:
            with psycopg.connect(self.db, connect_timeout=5) as conn:
                return conn.execute(
                    "SELECT symbol, trade_id FROM trades WHERE venue = %s AND symbol = ANY(%s)",
                    (self.venue_name, self.symbols),
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # the sink has not created its schema yet
        except psycopg.OperationalError:
            return []  # the database is down (a case stopped it)

    def gaps(self) -> list[tuple[str, str]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(
                "SELECT symbol, detail FROM gaps WHERE venue = %s AND kind = 'gap' AND symbol = ANY(%s)",
                (self.venue_name, self.symbols),
            ).fetchall()

    def flowing(self, least: int = 10, timeout: float = 120.0) -> None:
        """Wait until trades reach the database: the chain is up."""
        wait_for(lambda: len(self.rows()) >= least, f"{least} trades stored ({self.case})", timeout)

    def recovery(self, mark: int, since: float, timeout: float = 180.0) -> float:
        """Seconds from ``since`` until a trade made after ``mark`` is stored."""

        def fresh() -> bool:
            after = set(self.tape[mark:])
            return bool(after) and not after.isdisjoint(self.rows())

        wait_for(fresh, f"a trade made after the fault stored ({self.case})", timeout, every=0.25)
        return time.monotonic() - since

    def finish(self, recover_s: float | None, *, note: str = "", settle_s: float = 120.0,
               gaps: int = 0) -> Outcome:  # fmt: skip
        """Stop the venue's trading, let everything arrive, stop every daemon by pid, and account. ``gaps``: the
        gap markers the case expects; they travel on their own status topic and may land after the last trade, so
        the count is read once they are in (or 15 s after the trades settled)."""
        self.venue.stop_trading()
        time.sleep(0.5)  # a trade being sent as trading stopped
        sent = set(self.tape)
        end = time.monotonic() + settle_s
        last, since = -1, time.monotonic()
        while time.monotonic() < end:  # until all is stored, or nothing more arrives for 15 s
            n = len(set(self.rows()) & sent)
            if n == len(sent):
                break
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > 15:
                break
            time.sleep(0.3)
        markers_by = time.monotonic() + 15
        while gaps and len(self.gaps()) < gaps and time.monotonic() < markers_by:
            time.sleep(0.3)
        time.sleep(0.5)  # a duplicate would land now
        rows = self.rows()
        stored = set(rows)
        out = Outcome(
            case=self.case,
            broker=self.settings.runtime.broker,
            sent=len(sent),
            stored=len(rows),
            duplicates=len(rows) - len(stored),
            lost=len(sent - stored),
            extra=len(stored - sent),
            gaps=len(self.gaps()),
            recover_s=recover_s,
            note=note,
            lost_sample=[f"{s}:{i}" for s, i in sorted(sent - stored)[:10]],
        )
        RESULTS.append(out)
        return out

    def close(self) -> None:
        for name in reversed(list(self.daemons)):
            self.terminate(name)
        for d in self.daemons.values():
            for pid in d.pids:
                assert not pid_alive(pid), f"{d.name} ({pid}) still alive"
        self.venue.close()

    def summary(self, name: str) -> dict[str, Any]:
        """The ``--json`` summary the daemon printed on its last clean exit."""
        text = self.output(name).strip()
        return json.loads(text) if text else {}


class BinanceChain(Chain):
    """The same chain from the local Binance venue (real Binance symbols only: its exchangeInfo is Binance's);
    its tape is what it sent (it does not trade while nobody listens)."""

    venue_name = "binance"

    def __init__(self, settings: Settings, workdir: Path, case: str, *, faults: Any = None, **kw: Any) -> None:
        from ingesters.binance.simulator import BinanceSimulator

        super().__init__(settings, workdir, case, **kw)
        self.symbols = ["BTC/USDT", "ETH/USDT"]
        self.venue = Venue(BinanceSimulator, symbols=self.symbols, rate=kw.get("rate", 40.0), seed=5, faults=faults)

    def start_ingester(self) -> None:
        sim = self.venue.sim
        args = ("ingest", "binance", "--url", sim.url, "--rest-url", sim.rest_url, "--symbols",
                ",".join(self.symbols), "--channels", self.channels, "--json")  # fmt: skip
        self.add("ingest", *args, env=self.ingest_env)

    @property
    def tape(self) -> list[tuple[str, str]]:
        return [(t.symbol, str(t.trade_id)) for t in list(self.venue.sim.sent_trades)]

    def mark(self) -> int:
        return len(self.venue.sim.sent_trades)


@contextmanager
def chain(settings: Settings, workdir: Path, case: str, *, kind: type[Chain] = Chain, **kwargs: Any) -> Iterator[Chain]:
    c = kind(settings, workdir, case, **kwargs)
    try:
        c.start()
        yield c
    finally:
        c.close()


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    """The sum of a family's samples in Prometheus text (0 when absent); a counter's ``_total`` included."""
    total = 0.0
    for line in text.splitlines():
        for n in (name, name + "_total"):
            if line.startswith(n) and line[len(n) : len(n) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total
