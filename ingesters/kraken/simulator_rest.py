"""The local Kraken venue's REST side: ``GET /0/public/Trades`` over every trade the venue made.

The :class:`TradeTape` keeps each pair's trades in time order — those streamed and those made while no client
was connected (the venue's market goes on: see ``KrakenSimulator(keep_trading=True)``) — up to ``maxlen`` per
pair, and answers as Kraken does (see :mod:`ingesters.kraken.rest`): ``pair`` by its REST name (``XBTUSD``) or
its WebSocket name (``BTC/USD``), ``since`` in nanoseconds (or whole seconds, up to 10 digits), ``count`` 1 to
1000; trades strictly after ``since``; ``last`` the time of the last trade returned (``since`` when none); prices
and volumes as strings padded to the pair's precisions, times as seconds with nine decimals, sides ``b``/``s``,
order types ``m``/``l``. Unknown pair: ``{"error": ["EQuery:Unknown asset pair"]}``; a bad argument:
``EGeneral:Invalid arguments``. ``fail_next`` answers the next N requests with ``EAPI:Rate limit exceeded``
(to exercise the client's retry).
"""

from __future__ import annotations

import bisect
from collections import deque
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ingesters.kraken.protocol import parse_rfc3339_ns
from ingesters.kraken.rest import rest_pair

TAPE_MAX = 100_000  # trades kept per pair
_NS = 1_000_000_000
_encoder = msgspec.json.Encoder(decimal_format="number")


class TradeTape:
    def __init__(self, precisions: dict[str, tuple[int, int]], maxlen: int = TAPE_MAX) -> None:
        self._precisions = dict(precisions)
        self._trades: dict[str, deque[tuple[int, list]]] = {s: deque(maxlen=maxlen) for s in precisions}
        self._names: dict[str, str] = {}
        for sym in precisions:
            self._names[sym] = sym
            self._names[rest_pair(sym)] = sym
        self.requests = 0
        self.fail_next = 0

    def add(self, data: dict) -> None:
        """Record a trade (a ``trade`` message's data item)."""
        sym = data["symbol"]
        ts = parse_rfc3339_ns(data["timestamp"])
        pp, qp = self._precisions[sym]
        when = Decimal(f"{ts // _NS}.{ts % _NS:09d}")
        price, qty = f"{Decimal(data['price']):.{pp}f}", f"{Decimal(data['qty']):.{qp}f}"
        row = [price, qty, when, data["side"][0], data["ord_type"][0], "", data["trade_id"]]
        self._trades[sym].append((ts, row))

    def __len__(self) -> int:
        return sum(len(t) for t in self._trades.values())

    def trade_ids(self, symbol: str) -> list[int]:
        return [row[6] for _ts, row in self._trades[symbol]]

    def entries(self, symbol: str) -> list[tuple[int, list]]:
        """``(ts_event ns, the REST row)`` of every trade of ``symbol`` kept, in time order."""
        return list(self._trades[symbol])

    def answer(self, query: dict[str, str]) -> tuple[HTTPStatus, dict]:
        self.requests += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return HTTPStatus.OK, {"error": ["EAPI:Rate limit exceeded"]}
        sym = self._names.get(query.get("pair", ""))
        if sym is None:
            return HTTPStatus.OK, {"error": ["EQuery:Unknown asset pair"]}
        since_text, count_text = query.get("since", "0"), query.get("count", "1000")
        if not since_text.isdigit() or not count_text.isdigit() or not 1 <= int(count_text) <= 1000:
            return HTTPStatus.OK, {"error": ["EGeneral:Invalid arguments"]}
        since = int(since_text) * (_NS if len(since_text) <= 10 else 1)
        tape = list(self._trades[sym])
        i = bisect.bisect_right([ts for ts, _row in tape], since)
        page = tape[i : i + int(count_text)]
        last = page[-1][0] if page else since
        return HTTPStatus.OK, {"error": [], "result": {rest_pair(sym): [row for _ts, row in page], "last": str(last)}}

    def http(self, request: Request) -> Response | None:
        """``process_request`` of the WebSocket server: REST paths are answered here, the rest goes on."""
        parts = urlsplit(request.path)
        if not parts.path.startswith("/0/"):
            return None
        if parts.path != "/0/public/Trades":
            return _json(HTTPStatus.NOT_FOUND, {"error": ["EGeneral:Unknown method"]})
        status, body = self.answer({k: v[-1] for k, v in parse_qs(parts.query).items()})
        return _json(status, body)


def _json(status: HTTPStatus, body: object) -> Response:
    data = _encoder.encode(body)  # trade times are JSON numbers, prices and volumes strings
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                       ("Connection", "close")])  # fmt: skip
    return Response(status.value, status.phrase, headers, data)
