"""docker-compose.yml, checked without Docker (it does not run here): valid against the Compose Specification's
JSON Schema (vendored in tests/fixtures/compose-spec), and consistent with what the local runtime runs — the same
pulsar/standalone.conf and pulsar/functions_worker.yml, applied the way the apachepulsar/pulsar image's
``bin/apply-config-from-env.py`` applies environment variables, a functions worker on the thread runtime with the
connector archive built from the committed inputs, a JDBC URL naming the database service, ``start_period`` on
every healthcheck."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from control_plane.jdbc_sink import jdbc_url
from pulse.runtime.apache import CONF_DIR
from pulse.runtime.connectors import JDBC_POSTGRES_DIR

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
PREFIX = "PULSAR_PREFIX_"
NOT_CONF_KEYS = {"PULSAR_MEM"}  # read by bin/pulsar's environment script, not keys of standalone.conf


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def conf_keys(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def apply_env(text: str, env: dict[str, str]) -> dict[str, str]:
    """What apply-config-from-env.py leaves in a .conf: a variable named like a key replaces that key's value;
    ``PULSAR_PREFIX_<key>`` adds ``<key>`` (and, in the image's newer script, also replaces an existing one)."""
    keys = conf_keys(text)
    for k, v in env.items():
        if k in keys:
            keys[k] = v.strip()
    for k, v in env.items():
        if k.startswith(PREFIX):
            keys[k[len(PREFIX) :]] = v.strip()
    return keys


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the schema says draft-07 (by a URL the library does not know)
    validator.validate(compose)
    # the schema does catch mistakes: an unknown healthcheck key is refused
    bad = json.loads(json.dumps(compose))
    bad["services"]["pulsar"]["healthcheck"]["startperiod"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def test_every_healthcheck_has_a_start_period(compose: dict[str, Any]) -> None:
    checked = {name: svc["healthcheck"] for name, svc in compose["services"].items() if "healthcheck" in svc}
    assert set(checked) == {"pulsar", "timescaledb", "ingest-kraken", "ingest-oanda", "sink", "matching", "alerting"}
    for name, hc in checked.items():
        assert re.fullmatch(r"\d+s", hc.get("start_period", "")), f"{name}: no start_period"


def test_broker_settings_go_through_apply_config_from_env(compose: dict[str, Any]) -> None:
    pulsar = compose["services"]["pulsar"]
    conf = (CONF_DIR / "standalone.conf").read_text()
    keys = conf_keys(conf)
    env = {k: str(v) for k, v in pulsar["environment"].items()}
    for k in env:
        if k in NOT_CONF_KEYS:
            continue
        if k.startswith(PREFIX):  # only for keys the file lacks (the image's older script only adds)
            assert k[len(PREFIX) :] not in keys, f"{k}: the key is in standalone.conf, set it as {k[len(PREFIX) :]}"
        else:  # a plain variable only acts on a key the file has
            assert k in keys, f"{k} is not a key of pulsar/standalone.conf: apply-config-from-env.py would ignore it"
    effective = apply_env(conf, env)
    assert effective["bindAddress"] == "0.0.0.0"  # reachable through the published ports
    assert effective["functionsWorkerEnabled"] == "true"
    assert effective["brokerDeduplicationEnabled"] == "true"
    # the script runs on the copied file before the broker starts, with the functions worker (no --no-functions…)
    script = pulsar["command"][0]
    lines = [ln.strip() for ln in script.strip().splitlines()]
    apply_at = next(i for i, ln in enumerate(lines) if "apply-config-from-env.py conf/standalone.conf" in ln)
    copy_at = lines.index("cp /pulse/standalone.conf conf/standalone.conf")
    start_at = next(i for i, ln in enumerate(lines) if "bin/pulsar standalone" in ln)
    assert copy_at < apply_at < start_at
    assert "--no-functions-worker" not in lines[start_at]


def test_same_config_files_as_the_local_runtime(compose: dict[str, Any]) -> None:
    pulsar = compose["services"]["pulsar"]
    mounts = {v.split(":")[1]: (COMPOSE.parent / v.split(":")[0]).resolve() for v in pulsar["volumes"] if v[0] == "."}
    assert mounts["/pulse/standalone.conf"] == CONF_DIR / "standalone.conf"
    assert mounts["/pulse/functions_worker.yml"] == CONF_DIR / "functions_worker.yml"
    assert "cp /pulse/functions_worker.yml conf/functions_worker.yml" in pulsar["command"][0]
    worker = yaml.safe_load((CONF_DIR / "functions_worker.yml").read_text())
    assert worker["functionRuntimeFactoryClassName"].endswith(".thread.ThreadRuntimeFactory")
    # the image runs in /pulsar: ./connectors is where the connectors volume is mounted
    assert worker["connectorsDirectory"] == "./connectors"
    assert "connectors:/pulsar/connectors:ro" in pulsar["volumes"]


def test_connector_archive_built_from_the_committed_inputs(compose: dict[str, Any]) -> None:
    svc = compose["services"]["connectors"]
    src = next(v for v in svc["volumes"] if v.endswith(":/src:ro"))
    assert (COMPOSE.parent / src.split(":")[0]).resolve() == JDBC_POSTGRES_DIR
    script = svc["command"][0]
    assert "-f /src/pom.xml dependency:copy-dependencies" in script
    assert "cp /src/pulsar-io.yaml /tmp/nar/META-INF/services/pulsar-io.yaml" in script
    assert "/tmp/nar/META-INF/bundled-dependencies" in script
    assert compose["services"]["pulsar"]["depends_on"]["connectors"]["condition"] == "service_completed_successfully"


def test_jdbc_url_names_the_database_service(compose: dict[str, Any]) -> None:
    header = COMPOSE.read_text().split("services:", 1)[0]
    m = re.search(r"pulse pulsar provision --jdbc-table \w+ --jdbc-host (\S+)", header)
    assert m, "the compose header shows how to create the JDBC sink"
    host = m.group(1)
    assert host in compose["services"] and "pg_isready" in compose["services"][host]["healthcheck"]["test"]
    db = re.search(r"PULSE_DATABASE__URL=(\S+)", header)
    assert db
    url = jdbc_url(db.group(1), host)
    assert url == "jdbc:postgresql://timescaledb:5432/pulse?stringtype=unspecified"
    assert "localhost" not in url
