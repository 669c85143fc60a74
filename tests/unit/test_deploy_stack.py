"""The deployable stack, checked without Docker (it does not run here): the Pulse services in docker-compose.yml
run commands and settings the real CLI accepts, carry /readyz healthchecks on the ports they serve, keep secrets
out of the file, start after `pulse pulsar provision`, and match what Prometheus scrapes and the dashboard
plots; the Dockerfile is multi-stage, non-root and installs the locked environment with every package."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cli import cli
from pulse.metrics import MetricsServer, Probe
from pulse.metrics import main as readyz_check
from pulse.settings import Settings, env_overrides

REPO = Path(__file__).resolve().parents[2]
INFRA = {"pulsar", "timescaledb", "connectors", "prometheus"}  # not built from the Dockerfile


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def pulse_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "pulse:local"}


def metrics_port(svc: dict[str, Any]) -> int | None:
    cmd = svc.get("command") or []
    return int(cmd[cmd.index("--metrics-port") + 1]) if "--metrics-port" in cmd else None


def resolve(args: list[str]) -> tuple[click.Command | None, list[str]]:
    """The click command ``pulse ARGS`` names, and its own arguments (None: not a command of this build)."""
    cmd: click.Command = cli
    ctx = click.Context(cli)
    while isinstance(cmd, click.Group) and args:
        sub = cmd.get_command(ctx, args[0])
        if sub is None:
            return None, args
        cmd, args = sub, args[1:]
    return cmd, args


def test_every_pulse_service_runs_a_command_the_cli_accepts(compose: dict[str, Any]) -> None:
    checked = 0
    for name, svc in pulse_services(compose).items():
        if svc.get("entrypoint"):  # a shell script of pulse commands (demo-setup)
            script = svc["command"][0]
            for line in re.findall(r"pulse ([a-z][^|&\n]*)", script):
                cmd, rest = resolve(line.split())
                assert cmd is not None, f"{name}: pulse {line}"
            continue
        cmd, rest = resolve(list(svc["command"]))
        if cmd is None:
            assert name in ("monitor", "gateway"), f"{name}: {svc['command']} is not a pulse command"
            continue  # pulse monitor / pulse web come with their own branches (h/history, h/console)
        cmd.make_context(name, rest, obj=None)  # parses and validates every option, as the CLI would
        checked += 1
    assert checked >= 8


def test_settings_in_the_environment_are_valid_and_secrets_are_files(compose: dict[str, Any]) -> None:
    declared = set(compose["secrets"])
    sections = set(Settings.__struct_fields__)
    for name, svc in pulse_services(compose).items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        mine = {k: v for k, v in env.items() if k.split("__")[0].removeprefix("PULSE_").lower() in sections}
        env_overrides(mine)  # refuses unknown sections/keys by name
        for k, v in env.items():
            assert not re.search(r"(PASSWORD|TOKEN|SECRET)$", k), f"{name}: secret {k} in the file"
            assert "@" not in v and "password" not in v.lower(), f"{name}: {k} looks like a credential"
            if k.endswith("_FILE"):
                secret = v.removeprefix("/run/secrets/")
                assert v.startswith("/run/secrets/") and secret in svc["secrets"] and secret in declared, (name, k)
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")
    assert "deploy/secrets/" in (REPO / ".gitignore").read_text()


def test_healthchecks_ask_readyz_on_the_served_port(compose: dict[str, Any]) -> None:
    served = 0
    for name, svc in pulse_services(compose).items():
        port = metrics_port(svc)
        if port is None:
            continue
        served += 1
        test = svc["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "pulse.metrics", f"http://127.0.0.1:{port}/readyz"], name
        assert svc["healthcheck"]["start_period"]
    assert served == 5  # both ingesters, sink, matching, alerting


def test_profiles_and_start_order(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    assert svcs["pulse-init"]["command"] == ["pulsar", "provision"]
    assert svcs["pulse-init"]["depends_on"]["pulsar"]["condition"] == "service_healthy"
    for name in ("kraken-venue", "oanda-venue", "ingest-kraken", "ingest-oanda", "demo-setup"):
        assert svcs[name]["profiles"] == ["demo"], name
    for name in ("sink", "matching", "alerting"):
        assert "profiles" not in svcs[name]
        assert svcs[name]["depends_on"]["pulse-init"]["condition"] == "service_completed_successfully"
    assert svcs["ingest-kraken"]["depends_on"]["demo-setup"]["condition"] == "service_completed_successfully"
    for name, svc in pulse_services(compose).items():
        for dep in svc.get("depends_on", {}):
            assert dep in svcs, f"{name} depends on unknown {dep}"


def test_prometheus_scrapes_every_metrics_port(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "pulse")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{n}:{metrics_port(s)}" for n, s in pulse_services(compose).items() if metrics_port(s)}
    assert targets == expected
    mount = compose["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./deploy/prometheus/prometheus.yml:")
    # the example host settings use the same ports for the same services
    hosts = tomllib.loads((REPO / "deploy" / "pulse.example.toml").read_text())
    name_of = {"ingest-kraken": "ingest-kraken", "ingest-oanda": "ingest-oanda", "sink": "sink-postgres",
               "matching": "matching", "alerting": "alerting"}  # fmt: skip
    assert {f"{svc}:{hosts['metrics']['ports'][name_of[svc]]}" for svc in name_of} == expected


def exported_metric_names() -> set[str]:
    names = set()
    for path in [*REPO.glob("*/**/metrics.py"), REPO / "pulse" / "metrics.py"]:
        names |= set(re.findall(r'"(pulse_[a-z_]+)"', path.read_text()))
    # prometheus_client's process collector with namespace "pulse"
    return names | {"pulse_process_cpu_seconds", "pulse_process_resident_memory_bytes", "pulse_process_open_fds"}


def test_the_dashboard_plots_only_exported_metrics() -> None:
    dash = json.loads((REPO / "deploy" / "grafana" / "pulse-dashboard.json").read_text())
    exported = exported_metric_names()
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(pulse_[a-z_]+)", target["expr"]):
                used.add(re.sub(r"_(total|bucket|sum|count)$", "", metric))
    assert used and used <= exported, used - exported
    for wanted in ("pulse_events_in", "pulse_events_out", "pulse_publish_latency_seconds", "pulse_reconnects",
                   "pulse_checksum_failures", "pulse_parse_errors", "pulse_dead_letters", "pulse_queue_depth",
                   "pulse_sink_lag_seconds", "pulse_sink_batch_rows", "pulse_alerts_fired", "pulse_fills"):  # fmt: skip
        assert wanted in used, wanted


def test_dockerfile_is_multistage_non_root_and_locked() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.M)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM ") :]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    syncs = re.findall(r"^RUN .*uv sync (.*)$", text, re.M)  # the dependencies layer, then the project
    assert (
        len(syncs) == 2
        and all("--frozen" in a and "--no-dev" in a for a in syncs)
        and "--no-install-project" in syncs[0]
    )
    assert "astral-sh/uv" not in final  # the build tool stays in the build stage
    copied = set(re.findall(r"^COPY (\S+) \./", text, re.M))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packaged = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["only-include"]
    assert set(packaged) <= copied | {"cli.py"} and "cli.py" in text
    assert "pulsar" in copied  # provisioning reads pulsar/namespaces.yaml and pulsar/schemas/
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "deploy/secrets" in ignored


def test_readyz_check_exit_codes() -> None:
    ready = {"ok": True}
    server = MetricsServer(Probe("svc", lambda: [], lambda: {"ok": ready["ok"]}), "127.0.0.1", 0).start()
    try:
        assert readyz_check([f"{server.url}/readyz"]) == 0
        ready["ok"] = False
        assert readyz_check([f"{server.url}/readyz"]) == 1
    finally:
        server.stop()
    assert readyz_check([f"{server.url}/readyz"]) == 1  # not answering
    assert readyz_check(["ftp://x"]) == 2
