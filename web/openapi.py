"""The API's OpenAPI 3.1 document, served at ``/api/openapi.json``; tests validate every response against it."""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_DEC = {"type": "string", "pattern": r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$", "description": "exact decimal"}
_NDEC = {"oneOf": [_DEC, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "properties": props, "required": required or list(props)}
    if not extra:
        doc["additionalProperties"] = False
    return doc


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {
    "400": _json(_ref("Error"), "bad request: the message names the parameter"),
    "401": _json(_ref("Error"), "missing or wrong bearer token"),
    "403": _json(_ref("Error"), "refused: origin not allowed, or no web.token configured"),
}


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_INSTRUMENT_QUERY = [
    _q("symbol", _STR, "canonical (BTC/USD) or the venue's spelling", True),
    _q("venue", _STR, "kraken, oanda, dukascopy (needed when several venues have the symbol)"),
    _q("from", _STR, "ISO 8601 time or Unix seconds (default: to - 1 day)"),
    _q("to", _STR, "ISO 8601 time or Unix seconds (default: now)"),
]
_PATH = [
    {"name": "venue", "in": "path", "required": True, "schema": _STR},
    {"name": "symbol", "in": "path", "required": True, "schema": _STR,
     "description": "any venue spelling; '-' stands for '/' (BTC-USD)"},
]  # fmt: skip
_CHANGE = {
    "200": _json(_ref("Change"), "done: the registry row and the steps taken"),
    "404": _json(_ref("Error"), "unknown venue, or the instrument is not in the registry"),
    **_ERR,
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pulse console API", "version": "1.0.0",
             "description": "Instruments, candles (fractal zoom), ticks, health, alerts and paper orders. "
                            "Reads are open on loopback; changes need Authorization: Bearer <web.token>."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": _obj({"error": _STR, "status": _INT, "field": _STR, "symbol": _STR}, ["error", "status"]),
            "Instrument": _obj(
                {"venue": _STR, "symbol": _STR, "namespace": _STR, "enabled": {"type": "boolean"},
                 "channels": {"type": "array", "items": _STR}, "source": {"enum": ["registry", "ingester"]},
                 "streams": {"type": "array", "items": _STR, "description": "what /ws can subscribe to"},
                 "venue_symbol": _STR, "asset_class": _STR, "price_precision": _INT, "size_precision": _INT,
                 "created": {"type": ["string", "null"]}, "updated": {"type": ["string", "null"]}},
                ["venue", "symbol", "namespace", "enabled", "channels", "source", "streams"],
            ),
            "Change": _obj({"instrument": {"type": "object"}, "steps": {"type": "array", "items": {
                "type": "object", "properties": {"step": _STR, "result": _STR}, "required": ["step", "result"]}},
                "topics": {"type": "array", "items": _STR}}, ["instrument", "steps"]),
            "Candle": _obj({"time": _INT, "bucket": _STR, "open": _DEC, "high": _DEC, "low": _DEC, "close": _DEC,
                            "volume": _NDEC, "ticks": _INT}),
            "Tick": _obj({"ts_event": _INT, "time": {"type": "number"}, "price": _NDEC, "size": _DEC,
                          "side": {"type": ["string", "null"]}, "bid": _NDEC, "ask": _NDEC}, ["ts_event", "time"]),
        },
    },
    "paths": {
        "/api/instruments": {
            "get": {"summary": "Known instruments (registry, and what running ingesters stream)",
                    "responses": {"200": _json(_obj({"instruments": {"type": "array", "items": _ref("Instrument")}}),
                                               "the instruments")}},
            "post": {
                "summary": "Add instruments (pulse symbols add): every symbol validated first, all or nothing",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _obj(
                    {"venue": _STR, "symbols": {"type": "array", "items": _STR, "minItems": 1},
                     "channels": {"type": ["array", "null"], "items": _STR},
                     "price_precision": {"type": ["integer", "null"], "minimum": 0, "maximum": 18},
                     "size_precision": {"type": ["integer", "null"], "minimum": 0, "maximum": 18}},
                    ["venue", "symbols"], extra=False)}}},
                "responses": {"201": _json(_obj({"results": {"type": "array", "items": _ref("Change")}}), "added"),
                              "415": _json(_ref("Error"), "body is not application/json"), **_ERR},
            },
        },
        "/api/instruments/{venue}/{symbol}": {
            "delete": {"summary": "Remove an instrument (stored data and topics are kept)", "parameters": _PATH,
                       "security": [{"bearer": []}], "responses": _CHANGE},
        },
        "/api/instruments/{venue}/{symbol}/enable": {
            "post": {"summary": "Resume streaming", "parameters": _PATH, "security": [{"bearer": []}],
                     "responses": _CHANGE},
        },
        "/api/instruments/{venue}/{symbol}/disable": {
            "post": {"summary": "Stop streaming, keep registered", "parameters": _PATH, "security": [{"bearer": []}],
                     "responses": _CHANGE},
        },
        "/api/candles": {
            "get": {
                "summary": "OHLCV candles; with points=N the server picks the resolution (fractal zoom)",
                "parameters": [*_INSTRUMENT_QUERY,
                               _q("interval", {"enum": ["1w", "1d", "1h", "5m", "1m", "1s"]}, "fixed resolution"),
                               _q("points", {"type": "integer", "minimum": 1, "maximum": 5000},
                                  "about this many buckets: 1w … 1s, or raw ticks for narrow ranges")],
                "responses": {"200": _json(_obj(
                    {"venue": {"type": ["string", "null"]}, "symbol": _STR, "from": _STR, "to": _STR,
                     "resolution": {"enum": ["1w", "1d", "1h", "5m", "1m", "1s", "tick"]},
                     "points": {"type": ["integer", "null"]},
                     "candles": {"type": "array", "items": _ref("Candle")},
                     "ticks": {"type": "array", "items": _ref("Tick")}, "source": {"type": ["string", "null"]}},
                    ["symbol", "from", "to", "resolution", "candles"]), "candles or ticks"), **_ERR},
            },
        },
        "/api/ticks": {
            "get": {
                "summary": "The most recent ticks in a range (trades, else quotes), oldest first, bounded",
                "parameters": [*_INSTRUMENT_QUERY, _q("limit", {"type": "integer", "minimum": 1, "maximum": 5000},
                                                      "at most this many (default 1000)")],
                "responses": {"200": _json(_obj(
                    {"venue": {"type": ["string", "null"]}, "symbol": _STR, "from": _STR, "to": _STR, "limit": _INT,
                     "truncated": {"type": "boolean"}, "source": {"type": ["string", "null"]},
                     "ticks": {"type": "array", "items": _ref("Tick")}}), "ticks"), **_ERR},
            },
        },
        "/api/status": {
            "get": {"summary": "What pulse status --json reports, plus the gateway's own counters",
                    "responses": {"200": _json(_obj({"healthy": {"type": "boolean"},
                                                     "lines": {"type": "array", "items": _STR},
                                                     "gateway": {"type": "object"}}), "health")}},
        },
        "/api/alerts": {
            "get": {"summary": "Recent alerts, newest first",
                    "parameters": [_q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 50")],
                    "responses": {"200": _json(_obj({"alerts": {"type": "array", "items": {"type": "object"}}}),
                                               "alerts"), **_ERR}},
        },
        "/api/orders": {
            "get": {"summary": "Paper orders (latest execution each) and positions",
                    "parameters": [_q("account", _STR, "only this account")],
                    "responses": {"200": _json(_obj({"orders": {"type": "array", "items": {"type": "object"}},
                                                     "positions": {"type": "array", "items": {"type": "object"}}}),
                                               "orders and positions")}},
        },
        "/api/gateway": {
            "get": {"summary": "Gateway counters: clients, readers, events in, delivered, conflated, slow clients "
                               "closed, bad messages",
                    "responses": {"200": _json(_ref("Gateway"), "counters")}},
        },
        "/healthz": {"get": {"summary": "The process answers",
                             "responses": {"200": _json(_obj({"ok": {"type": "boolean"}}), "alive")}}},
        "/readyz": {"get": {"summary": "Connected to the broker and the registry read",
                            "responses": {"200": _json(_ref("Ready"), "ready"),
                                          "503": _json(_ref("Ready"), "not ready")}}},
    },
}  # fmt: skip
SPEC["components"]["schemas"]["Ready"] = _obj(
    {"ready": {"type": "boolean"}, "problems": {"type": "array", "items": _STR}}
)
SPEC["components"]["schemas"]["Gateway"] = _obj(
    {k: _INT for k in ("readers", "received", "orders_sent", "stale_removed", "events_in", "delivered", "conflated",
                       "slow_closed", "bad_messages", "undecodable", "duplicates", "clients", "clients_total")}
    | {"ready": {"type": "boolean"}, "problems": {"type": "array", "items": _STR}}
)  # fmt: skip

# -- alert rules and paper orders (web.writes) -------------------------------------------------------------
_NUM = {"oneOf": [{"type": "number"}, _DEC]}
_WAIT = _q("wait", {"type": "number", "minimum": 0, "maximum": 30},
           "seconds to wait for the matching service's answer (default 5; 0: send and return 202)")  # fmt: skip
_ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": _STR, "description": "the order's id"}
_ANSWER = _obj({"request_id": _STR, "order_id": _STR, "answered": {"type": "boolean"},
                "executions": {"type": "array", "items": {"type": "object"}}},
               ["request_id", "order_id", "executions", "answered"])  # fmt: skip
_ORDER_ERR = {
    "202": _json(_ANSWER, "sent; the matching service did not answer within wait"),
    "404": _json(_ref("Error"), "no such order (the gateway knows the orders on the fills topic)"),
    "409": _json(_ref("Error"), "the order is no longer open"),
    "415": _json(_ref("Error"), "body is not application/json"),
    "422": _json(_ref("Error"), "rejected by the matching service: the reason, and its executions"),
    "502": _json(_ref("Error"), "the broker refused the command"),
    "503": _json(_ref("Error"), "not connected to the broker yet"),
    **_ERR,
}
_KINDS = ["price_cross", "pct_change", "ma_cross", "spread", "volume_spike", "stale_feed", "divergence"]
SPEC["components"]["schemas"]["Rule"] = {
    "type": "object", "required": ["id", "kind", "venue", "symbol", "name", "cooldown_s", "hysteresis", "enabled"],
    "properties": {"id": _INT, "kind": {"enum": _KINDS},
                   "venue": _STR, "symbol": _STR, "name": _STR, "cooldown_s": {"type": "number"},
                   "hysteresis": {"type": "number"}, "enabled": {"type": "boolean"}},
    "description": "plus the kind's own fields (above, below, price, window_s, pct, direction, fast, slow, ma, "
                   "interval_s, bps, z, buckets, min_volume, silence_s, calendar, other_venue, max_age_s)",
}  # fmt: skip
SPEC["paths"]["/api/alerts"]["post"] = {
    "summary": "Add an alert rule (pulse alerts add): validated by the rule's own definition, refused naming the field",
    "security": [{"bearer": []}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["kind", "symbol"],
        "properties": {"kind": {"enum": list(dict.fromkeys([*_KINDS, *(k.replace("_", "-") for k in _KINDS)])),
                                "description": "the rule's kind, with _ or -"},
                       "symbol": {"type": "string", "description": "VENUE:SYMBOL, or SYMBOL with venue"},
                       "venue": _STR, "name": _STR, "cooldown_s": {"type": "number"}, "hysteresis": {"type": "number"},
                       "enabled": {"type": "boolean"}, "above": _NUM, "below": _NUM},
        "additionalProperties": True, "description": "the rule's fields, named as in GET /api/alerts/rules"}}}},
    "responses": {"201": _json(_obj({"rule": _ref("Rule")}), "stored, with its id"),
                  "415": _json(_ref("Error"), "body is not application/json"),
                  "503": _json(_ref("Error"), "the database is unavailable"), **_ERR},
}  # fmt: skip
SPEC["paths"]["/api/alerts/rules"] = {"get": {
    "summary": "The stored alert rules (pulse alerts list), and any stored row that no longer validates",
    "responses": {"200": _json(_obj({"rules": {"type": "array", "items": _ref("Rule")},
                                     "invalid": {"type": "array", "items": _obj({"id": _INT, "kind": _STR,
                                                                                 "error": _STR})}}), "rules"),
                  "503": _json(_ref("Error"), "the database is unavailable")}}}  # fmt: skip
SPEC["paths"]["/api/alerts/{id}"] = {"delete": {
    "summary": "Remove an alert rule (pulse alerts remove)", "security": [{"bearer": []}],
    "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR, "description": "the rule's id"}],
    "responses": {"200": _json(_obj({"removed": {"type": "array", "items": _INT}}), "removed"),
                  "404": _json(_ref("Error"), "no rule with that id"),
                  "503": _json(_ref("Error"), "the database is unavailable"), **_ERR}}}  # fmt: skip
SPEC["paths"]["/api/orders"]["post"] = {
    "summary": "Place a paper order (pulse orders submit): checked by the matching engine's rules against the "
               "registry's increments before it is sent, then the service's answer",
    "security": [{"bearer": []}], "parameters": [_WAIT],
    "requestBody": {"required": True, "content": {"application/json": {"schema": _obj(
        {"symbol": {"type": "string", "description": "VENUE:SYMBOL, or SYMBOL with venue"},
         "venue": {"type": ["string", "null"]}, "side": {"enum": ["buy", "sell"]}, "quantity": _NUM,
         "order_type": {"enum": ["market", "limit", "stop", "stop_limit", None]},
         "price": {"oneOf": [*_NUM["oneOf"], {"type": "null"}]},
         "stop_price": {"oneOf": [*_NUM["oneOf"], {"type": "null"}]},
         "tif": {"enum": ["GTC", "IOC", "FOK", "DAY", None]},
         "order_id": {"type": ["string", "null"]}, "account": {"type": ["string", "null"]}},
        ["symbol", "side", "quantity"], extra=False)}}},
    "responses": {"201": _json(_ANSWER, "the service's answer (accepted, fills)"), **_ORDER_ERR},
}  # fmt: skip
SPEC["paths"]["/api/orders/{order_id}"] = {
    "delete": {"summary": "Cancel an open paper order (pulse orders cancel)", "security": [{"bearer": []}],
               "parameters": [_ORDER_ID, _WAIT, _q("account", _STR, "the order's account, when ids repeat")],
               "responses": {"200": _json(_ANSWER, "cancelled"), **_ORDER_ERR}},
    "patch": {"summary": "Replace an open paper order's quantity, price or stop price (pulse orders replace)",
              "security": [{"bearer": []}],
              "parameters": [_ORDER_ID, _WAIT, _q("account", _STR, "the order's account, when ids repeat")],
              "requestBody": {"required": True, "content": {"application/json": {"schema": _obj(
                  {k: {"oneOf": [*_NUM["oneOf"], {"type": "null"}]} for k in ("quantity", "price", "stop_price")},
                  [], extra=False)}}},
              "responses": {"200": _json(_ANSWER, "replaced"), **_ORDER_ERR}},
}  # fmt: skip
