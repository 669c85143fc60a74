"""Fuzzing every decoder that reads outside input: each may refuse an input only with its own error class.

Targets (the decoder, the input it reads, the one error class it may raise):

==========  ==========================================================  =====================
kraken      ``KrakenFeedParser.feed`` — a WebSocket frame                ``KrakenMessageError``
oanda       ``LineSplitter.feed`` + ``OandaStreamParser.feed_line``       ``OandaMessageError``
binance     ``BinanceParser.feed`` — a combined-stream frame             ``BinanceMessageError``
bi5         ``bi5.decode_ticks`` / ``decode_candles`` — a .bi5 file      ``Bi5Error``
dukas_json  ``jsonapi.decode_ticks`` / ``decode_candles`` — an answer    ``ApiFormatError``
settings    ``load_settings`` — a settings file                          ``ConfigError``
console     ``web.protocol.parse_control`` — a WebSocket control message ``ProtocolError``
==========  ==========================================================  =====================

Inputs are mutations of a seed corpus (the recorded fixtures, valid inputs of each kind): bit flips, byte
replacements with boundary values, cuts, duplications, splices of two seeds, and JSON-aware edits (a value
swapped for another type, an absurd number, a long or non-UTF-8 string, deep nesting). A .bi5 input is mutated
either compressed or decompressed and recompressed, so the record decoder is reached too. The run is seeded:
the same seed gives the same inputs. Anything else raised is a crash: it is reported and written to
``tests/fixtures/fuzz/<target>/`` (``--save``), where the unit tests replay it for ever.

``python -m bench.fuzz`` (or ``make fuzz``) runs 1,000,000 inputs per target; ``--inputs N --seed S --only
kraken,oanda``. The unit tests (tests/unit/test_fuzz.py) run a short seeded slice of the same in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import lzma
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
CRASHES = FIXTURES / "fuzz"

#: the hour and divisors the .bi5 and JSON seeds were recorded with
_T0 = int(datetime(2023, 1, 20, 12, tzinfo=UTC).timestamp() * 1e9)


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    mutate: Callable[[random.Random, list[bytes]], bytes] | None = None  # default: generic + JSON mutations
    reset_every: int = 2000  # a fresh decoder every N inputs (state from fuzzed symbols stays bounded)
    _fresh: Callable[[], Callable[[bytes], object]] | None = field(default=None, repr=False)


# -------------------------------------------------------------------------------------------- mutations

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xc0", b"\xfe", b"\n", b'"', b"\\", b"{", b"[", b"]", b"}"]
_JSON_VALUES = [
    b"null", b"true", b"false", b"0", b"-0", b"1e999", b"-1e999", b"NaN", b"Infinity", b"1E+131072",
    b"18446744073709551616", b"-9223372036854775809", b"0.0000000000000000000000001", b'""', b"[]", b"{}",
    b'"\\ud800"', b'"\xff\xfe"', b'"' + b"A" * 5000 + b'"', b"[" * 1500 + b"]" * 1500,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b'"2026-13-45T99:99:99Z"', b'"1970-01-01T00:00:00.000000000Z"', b"3.4028235e38", b"-1", b"4294967296",
]  # fmt: skip
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null')


def _generic(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(7)
    if not b or op == 0:  # insert
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 8))
    elif op == 1:  # flip bits
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 2:  # replace a byte
        b[rng.randrange(len(b))] = rng.choice(_INTERESTING)[0]
    elif op == 3:  # delete a range
        at = rng.randrange(len(b))
        del b[at : at + rng.randint(1, max(1, len(b) // 4))]
    elif op == 4:  # duplicate a range
        at = rng.randrange(len(b))
        chunk = b[at : at + rng.randint(1, 64)]
        to = rng.randrange(len(b) + 1)
        b[to:to] = chunk
    elif op == 5:  # truncate
        del b[rng.randrange(len(b)) :]
    else:  # overwrite with random bytes
        at = rng.randrange(len(b))
        n = rng.randint(1, 8)
        b[at : at + n] = rng.randbytes(n)
    return bytes(b)


def _json_edit(rng: random.Random, data: bytes) -> bytes:
    """Swap one JSON token (string, number, literal) for another value, or wrap the document in nesting."""
    if rng.random() < 0.05:
        depth = rng.choice([10, 200, 1000, 3000])
        return b"[" * depth + data + b"]" * depth
    tokens = list(_TOKEN.finditer(data))
    if not tokens:
        return _generic(rng, data)
    m = rng.choice(tokens)
    if rng.random() < 0.7:
        new = rng.choice(_JSON_VALUES)
    else:
        other = rng.choice(tokens).group(0)  # another token of the same document
        new = other
    return data[: m.start()] + new + data[m.end() :]


def mutate_json(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = rng.choice(seeds)
    r = rng.random()
    if r < 0.1 and len(seeds) > 1:  # splice two seeds
        other = rng.choice(seeds)
        data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        data = _json_edit(rng, data) if rng.random() < 0.6 else _generic(rng, data)
    return data


def mutate_bi5(rng: random.Random, seeds: list[bytes]) -> bytes:
    """Half the time the compressed bytes, else the records (decompressed, mutated, recompressed)."""
    data = rng.choice(seeds)
    if rng.random() < 0.5:
        return _generic(rng, data)
    raw = bytearray(_decompressed(data))
    if raw and rng.random() < 0.6:  # a field of one record: any 32-bit value (offsets, prices, float32 volumes)
        size = 24 if len(raw) % 24 == 0 else 20
        rec = rng.randrange(max(1, len(raw) // size))
        at = rec * size + rng.randrange(0, size - 3, 4)
        raw[at : at + 4] = rng.choice([*_EDGE_WORDS, rng.randbytes(4)])
    else:
        raw = bytearray(_generic(rng, bytes(raw)))
    return lzma.compress(bytes(raw), format=lzma.FORMAT_ALONE, preset=0)


_DECOMPRESSED: dict[bytes, bytes] = {}
#: big-endian 32-bit words at the edges: +inf and NaN float32, the largest float32, -1, 1, the sign bit
_EDGE_WORDS = [b"\x7f\x80\x00\x00", b"\x7f\xc0\x00\x00", b"\x7f\x7f\xff\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x01",
               b"\x80\x00\x00\x00"]  # fmt: skip


def _decompressed(data: bytes) -> bytes:
    if data not in _DECOMPRESSED:
        _DECOMPRESSED[data] = lzma.decompress(data, format=lzma.FORMAT_ALONE)
    return _DECOMPRESSED[data]


# ---------------------------------------------------------------------------------------------- targets


def _read_all(folder: Path, pattern: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.rglob(pattern))]


def _kraken() -> Target:
    from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError

    def fresh() -> Callable[[bytes], object]:
        parser = KrakenFeedParser(depth=10)
        return parser.feed

    seeds = [
        json.dumps(json.loads(b), separators=(",", ":")).encode() for b in _read_all(FIXTURES / "kraken", "*.json")
    ]
    return Target("kraken", seeds, fresh(), (KrakenMessageError,), _fresh=fresh)


def _oanda() -> Target:
    from ingesters.oanda.parser import LineSplitter, OandaMessageError, OandaStreamParser

    def fresh() -> Callable[[bytes], object]:
        parser, splitter = OandaStreamParser(), LineSplitter()

        def run(data: bytes) -> object:
            out = [parser.feed_line(line) for line in splitter.feed(data + b"\n")]
            return out

        return run

    seeds = [line for b in _read_all(FIXTURES / "oanda", "*.jsonl") for line in b.splitlines() if line.strip()]
    return Target("oanda", seeds, fresh(), (OandaMessageError,), _fresh=fresh)


def _binance() -> Target:
    from ingesters.binance.parser import BinanceMessageError, BinanceParser

    def fresh() -> Callable[[bytes], object]:
        parser = BinanceParser()
        parser.track_book("BTC/USDT")
        return parser.feed

    seeds = []
    for p in sorted((FIXTURES / "binance").glob("*.json")):
        doc = json.loads(p.read_bytes())
        if p.stem in ("trade", "agg_trade", "book_ticker", "depth_update", "server_shutdown", "subscribe_response",
                      "error_response"):  # fmt: skip
            seeds.append(json.dumps(doc, separators=(",", ":")).encode())
    return Target("binance", seeds, fresh(), (BinanceMessageError,), _fresh=fresh)


def _bi5() -> Target:
    from ingesters.dukascopy.bi5 import Bi5Error, decode_candles, decode_ticks

    folder = FIXTURES / "dukascopy" / "BTCUSD"
    ticks = _read_all(folder, "*_ticks.bi5")
    candles = _read_all(folder, "*_candles_*.bi5")

    def run(data: bytes) -> object:  # both record layouts read every input; Bi5Error is the only way out
        with contextlib.suppress(Bi5Error):
            decode_ticks(data, hour_start_ns=_T0, divisor=10, symbol="BTCUSD")
        return decode_candles(data, period_start_ns=_T0, divisor=10, symbol="BTCUSD")

    seeds = [_small_bi5(s) for s in ticks + candles]  # a few records each: mutations stay cheap
    return Target("bi5", seeds, run, (Bi5Error,), mutate=mutate_bi5, reset_every=0)


def _small_bi5(data: bytes, records: int = 8) -> bytes:
    raw = lzma.decompress(data, format=lzma.FORMAT_ALONE)
    size = 20 if len(raw) % 20 == 0 else 24
    small = lzma.compress(raw[: records * size], format=lzma.FORMAT_ALONE, preset=0)
    _DECOMPRESSED[small] = raw[: records * size]
    return small


def _dukas_json() -> Target:
    from ingesters.dukascopy.jsonapi import ApiFormatError, decode_candles, decode_ticks

    folder = FIXTURES / "dukascopy" / "v1"
    seeds = []
    for doc in map(json.loads, _read_all(folder / "ticks", "*.json") + _read_all(folder / "candles", "*.json")):
        small = {k: v[:6] if isinstance(v, list) else v for k, v in doc.items()}  # a few rows: cheap mutations
        small["timestamp"] = _T0 // 1_000_000  # the hour (or period) the decoder is asked for
        seeds.append(json.dumps(small, separators=(",", ":")).encode())

    def run(data: bytes) -> object:  # both answer kinds read every input
        with contextlib.suppress(ApiFormatError):
            decode_ticks(data, hour_start_ns=_T0, source="fuzz", whole_hour=False)
        return decode_candles(data, period_start_ns=_T0, step_s=60, source="fuzz", whole_period=False)

    return Target("dukas_json", seeds, run, (ApiFormatError,), reset_every=0)


def _settings() -> Target:
    from pulse.errors import ConfigError
    from pulse.settings import load_settings

    example = (REPO / "pulse.toml.example").read_bytes()
    sections = re.split(rb"(?m)^(?=\[)", example)
    seeds = [example, *[s for s in sections if s.strip()]]
    tmp = Path(tempfile.mkdtemp(prefix="pulse-fuzz-settings-")) / "pulse.toml"

    def run(data: bytes) -> object:
        tmp.write_bytes(data)
        return load_settings(tmp, environ={})

    return Target("settings", seeds, run, (ConfigError,), reset_every=0)


def _console() -> Target:
    from web.protocol import ProtocolError, parse_control

    seeds = [
        b'{"op":"subscribe","venue":"kraken","symbol":"BTC/USD","channels":["trade","quote"],"req_id":1}',
        b'{"op":"unsubscribe","venue":"kraken","symbol":"BTC/USD","channels":["quote"],"req_id":"u1"}',
        b'{"op":"subscribe","channels":["alerts","fills"],"req_id":2}',
        b'{"op":"ping","req_id":3}',
        b'{"op":"subscribe","venue":"oanda","symbol":"EUR_USD","channels":["book"]}',
    ]
    return Target("console", seeds, parse_control, (ProtocolError,), reset_every=0)


TARGETS: dict[str, Callable[[], Target]] = {
    "kraken": _kraken,
    "oanda": _oanda,
    "binance": _binance,
    "bi5": _bi5,
    "dukas_json": _dukas_json,
    "settings": _settings,
    "console": _console,
}


# ------------------------------------------------------------------------------------------------- runs


@dataclass
class Crash:
    target: str
    error: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


@dataclass
class Result:
    target: str
    inputs: int
    refused: int  # inputs the decoder refused with its own error class
    seconds: float
    crashes: list[Crash]

    def line(self) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return (f"{self.target:<11} {self.inputs:>9,} inputs  {self.refused:>9,} refused  "
                f"{len(self.crashes):>3} crashes  {rate:>9,.0f}/s")  # fmt: skip


def check(target: Target, data: bytes) -> Crash | None:
    """Run one input; a crash when anything but the target's own error class escapes."""
    try:
        target.run(data)
    except target.allowed:
        return None
    except RecursionError as exc:
        return Crash(target.name, f"RecursionError: {exc}", data)
    except Exception as exc:
        return Crash(target.name, f"{type(exc).__name__}: {exc}"[:300], data)
    return None


def fuzz(target: Target, inputs: int, seed: int, *, max_crashes: int = 20) -> Result:
    rng = random.Random(f"{target.name}:{seed}")
    mutate = target.mutate or mutate_json
    crashes: list[Crash] = []
    seen: set[str] = set()
    refused = 0
    t0 = time.perf_counter()
    for i in range(inputs):
        if target._fresh is not None and target.reset_every and i % target.reset_every == 0:
            target.run = target._fresh()
        data = mutate(rng, target.seeds)
        try:
            target.run(data)
        except target.allowed:
            refused += 1
        except Exception as exc:
            crash = Crash(target.name, f"{type(exc).__name__}: {exc}"[:300], data)
            kind = crash.error.split(":", 1)[0] + crash.error[:80]
            if kind not in seen:
                seen.add(kind)
                crashes.append(crash)
                if len(crashes) >= max_crashes:
                    break
    return Result(target.name, i + 1 if inputs else 0, refused, time.perf_counter() - t0, crashes)


def save(crash: Crash, root: Path = CRASHES) -> Path:
    folder = root / crash.target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{crash.digest}.bin"
    path.write_bytes(crash.data)
    return path


def regression_inputs(name: str, root: Path = CRASHES) -> list[Path]:
    return sorted((root / name).glob("*.bin")) if (root / name).is_dir() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated targets: " + ",".join(TARGETS))
    ap.add_argument("--save", action="store_true", help="write each crash to tests/fixtures/fuzz/<target>/")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    results: list[Result] = []
    for name in names:
        res = fuzz(TARGETS[name](), args.inputs, args.seed)
        results.append(res)
        if not args.json:
            print(res.line(), flush=True)
        for c in res.crashes:
            where = f" -> {save(c)}" if args.save else ""
            print(f"  CRASH {c.error}{where}", file=sys.stderr)
    if args.json:
        out: list[dict[str, Any]] = [{"target": r.target, "inputs": r.inputs, "refused": r.refused,
                                      "seconds": round(r.seconds, 2), "crashes": [c.error for c in r.crashes]}
                                     for r in results]  # fmt: skip
        print(json.dumps(out, indent=2))
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
