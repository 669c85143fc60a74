"""What a person sees from one-shot commands: a backfill's summary printed once, with rounded figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pulse.runtime.procs import free_port, wait_for_port
from pulse.settings import Settings
from tests.conftest import SHARED_DATA
from tests.integration.test_cli import REPO, pulse


@pytest.mark.skipif(not (SHARED_DATA / "dukascopy").is_dir(), reason="shared Dukascopy files not present")
def test_a_backfill_prints_its_summary_once_with_rounded_figures(runtime_settings: Settings, tmp_path: Path) -> None:
    home = str(runtime_settings.home)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "--home", home, "simulate", "dukascopy", "--port", str(port),
         "--root", str(SHARED_DATA / "dukascopy")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, 15, pid=server.pid)
        res = pulse("--home", home, "backfill", "dukascopy", "EURUSD", "--url", f"http://127.0.0.1:{port}/datafeed",
                    "--feed", "bi5", "--from", "2019-02-04T00", "--to", "2019-02-04T02",
                    env={"PULSE_DUKASCOPY__CHECKPOINT_DIR": str(tmp_path / "ckpt")})  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    # one summary: the stdout line; no log line repeats the figures
    assert len(re.findall(r"ticks_published=\d+", out)) == 1 and "backfill done" not in out
    assert out.count(" 2 hours") + out.count("hours_downloaded=2") == 1
    elapsed = re.search(r"elapsed_s=(\S+)", res.stdout)
    assert elapsed and re.fullmatch(r"\d+\.\d", elapsed[1]), elapsed  # rounded to 0.1 s


@pytest.mark.parametrize(
    ("command", "shown", "old"),
    [
        (["ingest", "oanda"], ["--symbols", "--url"], ["--instruments", "--api-url"]),
        (["simulate", "oanda"], ["--symbols"], ["--instruments"]),
        (["backfill", "dukascopy"], ["--url"], ["--base-url"]),
        (["sink", "run"], ["--symbols"], ["--source"]),
        (["consumers", "matching", "run"], ["--symbols"], ["--instrument"]),
    ],
)
def test_one_option_name_shown_and_the_old_spelling_still_accepted(
    command: list[str], shown: list[str], old: list[str]
) -> None:
    helptext = pulse(*command, "--help").stdout
    assert all(f"  {name} " in helptext for name in shown), helptext
    assert not any(name in helptext for name in old), helptext
    # an old spelling still parses: a bad value through it is refused naming the option by its new name
    res = pulse("--home", "/nonexistent/pulse-home", *command, old[0], "kraken:BTC/USDX")
    assert res.returncode == 2 and "No such option" not in res.stderr, res.stderr


def test_systemd_render_reports_what_it_wrote_as_json(tmp_path: Path) -> None:
    import json

    res = pulse("systemd", "render", "--out", str(tmp_path / "units"), "--venue", "kraken", "--json")
    assert res.returncode == 0, res.stderr
    written = json.loads(res.stdout)["written"]
    assert sorted(written) == sorted(str(p) for p in (tmp_path / "units").rglob("*") if p.is_file())
    assert any(w.endswith("pulse-sink.service") for w in written)
