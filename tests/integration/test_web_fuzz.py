"""Schemathesis fuzzes every operation of the console's OpenAPI document against a running `pulse web` (real
broker, real PostgreSQL), with the bearer token so that the write paths are reached too: no answer may be a
5xx, and every answer must conform to the document (documented status code, JSON content type, schema).
Requests that break the document (wrong types, missing fields) must be refused with a 4xx. Generation is
derandomized (the same inputs every run, so the suite is stable); ``PULSE_FUZZ_EXAMPLES`` widens it.

Each finding became a regression test of its own (test_web_writes.py, test_web_api.py)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from pulse.settings import Settings
from tests.web_gateway import Gateway, gateway
from web.openapi import SPEC

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

schema = schemathesis.openapi.from_dict(SPEC)
MAX_EXAMPLES = int(os.environ.get("PULSE_FUZZ_EXAMPLES", "60"))  # per operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]  # fmt: skip


TAG = f"fz{int(time.time() * 1000) % 10**9}"
SYMBOL = f"kraken:FZ{TAG[-5:]}/USD"  # registered by the fixture: orders and rules on it pass the symbol checks


@pytest.fixture(scope="module")
def gw(runtime_settings: Settings) -> Iterator[Gateway]:
    env = {"PULSE_MATCHING__ORDERS_TOPIC": f"orders.{TAG}", "PULSE_MATCHING__FILLS_TOPIC": f"fills.{TAG}"}
    with gateway(runtime_settings, extra_env=env) as g:
        status, served = g.request("GET", "/api/openapi.json")
        assert status == 200 and served == SPEC  # what is fuzzed is what the gateway serves
        status, doc = g.request("POST", "/api/instruments", {"venue": "kraken", "symbols": [SYMBOL.split(":")[1]],
                                                             "price_precision": 1}, token=g.token)  # fmt: skip
        assert status == 201, doc
        yield g


def _steer(case: schemathesis.Case) -> None:
    """Half of the orders and rules name the registered instrument, so that generated prices, sizes and rule
    fields reach the checks behind the symbol's; orders do not wait for a matching service (none runs here).
    Only values that are already valid are replaced by valid ones: a case stays as (in)valid as generated."""
    body = case.body
    if case.method != "POST" or case.path not in ("/api/orders", "/api/alerts") or not isinstance(body, dict):
        return
    if isinstance(body.get("symbol"), str) and len(repr(body)) % 2:
        body["symbol"] = SYMBOL
        if isinstance(body.get("venue"), str) or body.get("venue", 0) is None:
            del body["venue"]
    if case.path == "/api/orders":
        query = case.query if isinstance(case.query, dict) else {}
        if isinstance(query.get("wait", 0), int | float) and not isinstance(query.get("wait"), bool):
            case.query = {**query, "wait": 0}


def _operation_test(method: str, path: str) -> Callable[..., None]:
    """Schemathesis's test (every phase: examples, coverage, fuzzing) of one operation."""

    @schema.include(method=method, path=path).parametrize()
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def test(case: schemathesis.Case, gw: Gateway) -> None:
        _steer(case)
        case.call_and_validate(base_url=gw.url, headers={"Authorization": f"Bearer {gw.token}"}, checks=CHECKS,
                               timeout=60)  # fmt: skip

    return test


# one test function per operation, named by it: `schema.parametrize()` over the whole document gives every operation
# the same test id, and pytest-xdist (which schedules by id) then ran one operation of the nineteen
for _op in (op.ok() for op in schema.get_all_operations()):
    _name = re.sub(r"\W+", "_", f"test_operation_{_op.method}_{_op.path}").rstrip("_").lower()
    globals()[_name] = _operation_test(_op.method.upper(), _op.path)


def test_the_fuzzing_reached_the_write_paths_and_leaves_no_rules(gw: Gateway) -> None:
    """Runs after the operations' tests (same module gateway): orders passed every check and were sent, so the checks
    behind the symbol's were exercised; any rule it stored is removed (the session's tests share the database)."""
    assert gw.stats()["orders_sent"] > 0
    status, doc = gw.request("GET", "/api/alerts/rules")
    assert status == 200
    for rid in [r["id"] for r in doc["rules"] if r["symbol"] == SYMBOL.split(":")[1]]:
        assert gw.request("DELETE", f"/api/alerts/{rid}", token=gw.token)[0] == 200
