"""Log lines as a user reads them: ISO-8601 UTC timestamps, key=value fields, and never through a progress bar."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest
from rich.console import Console

from pulse import log as pulse_log
from pulse.log import get_logger, register_secret, setup_logging

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, console = list(root.handlers), root.level, pulse_log._CONSOLE
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    pulse_log._CONSOLE = console


def test_a_text_line_has_an_iso_utc_timestamp_and_key_value_fields() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    before = time.time()
    get_logger("pulse.test").info("connected", url="ws://127.0.0.1:1/v2", symbols=3, note="two words")
    line = out.getvalue().rstrip("\n")
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z INFO  pulse\.test: connected (.*)", line)
    assert m, line
    assert m[2] == 'url=ws://127.0.0.1:1/v2 symbols=3 note="two words"'
    stamp = time.mktime(time.strptime(m[1][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone  # read as UTC
    assert abs(stamp - before) < 5


def test_containers_are_json_not_python_reprs() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    get_logger("pulse.test").info("subscribed", channels=("trade", "book"), depth={"BTC/USD": 10}, none=None)
    assert out.getvalue().rstrip().endswith(' subscribed channels=["trade","book"] depth={"BTC/USD":10} none=None')


def test_a_json_line_has_an_iso_utc_timestamp_and_its_fields_as_keys() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    register_secret("s3cr3t-token")
    get_logger("pulse.test").warning("refused", status=401, token="s3cr3t-token")
    doc = json.loads(out.getvalue())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"])
    assert (doc["level"], doc["event"], doc["status"], doc["token"]) == ("warning", "refused", 401, "***")


def test_a_log_line_never_breaks_the_backfill_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingesters.dukascopy.service import _progress_bar

    screen = io.StringIO()
    pulse_log._CONSOLE = Console(file=screen, force_terminal=True, width=160)
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    setup_logging("INFO", "text")
    with _progress_bar(True, "EURUSD", 4) as bar:
        assert bar is not None
        bar.update(bar.task_ids[0], completed=1, ticks=3000)
        bar.refresh()
        time.sleep(0.3)
        get_logger("ingesters.dukascopy.test").warning("hour failed, left for a re-run", hour="2019-02-04T01:00")
        bar.update(bar.task_ids[0], completed=4, ticks=12_000)
    text = ANSI.sub("", screen.getvalue())
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]  # what stays on screen after each \r
    logged = [line for line in lines if "hour failed" in line]
    assert len(logged) == 1 and re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z WARNING ingesters\.dukascopy\.test: hour failed, left for a re-run "
        r"hour=2019-02-04T01:00",
        logged[0],
    ), logged
    final = [line for line in lines if line.startswith("EURUSD")][-1]
    assert "4/4 hours" in final and "12,000 ticks" in final and "ticks/s" in final and "eta" in final


def test_service_logs_do_not_go_through_rich_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()  # a service's log file or pipe: isatty() is False
    monkeypatch.setattr("sys.stderr", pipe)
    pulse_log._CONSOLE = None
    setup_logging("INFO", "text")
    get_logger("pulse.test").info("plain", n=1)
    assert pipe.getvalue().endswith(" INFO  pulse.test: plain n=1\n") and pulse_log._CONSOLE is None
