"""docker-compose.yml's broker advertises a listener the Pulse containers reach, and they ask for it.

The broker's default listener advertises localhost (right for clients on the host, wrong inside the compose
network: a topic lookup would send a container to its own localhost). The file adds a "compose" listener
(advertisedListeners + bindAddresses, Pulsar's multiple advertised listeners) and every Pulse container connects
to it with ``pulsar.listener_name``. Docker does not run here: the file is checked against itself and against
the settings and client code that read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pulse.bus import client_options
from pulse.errors import ConfigError
from pulse.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def listeners(spec: str) -> dict[str, tuple[str, str, int]]:
    out = {}
    for item in spec.split(","):
        name, url = item.split(":", 1)
        scheme, rest = url.split("://", 1)
        host, port = rest.rsplit(":", 1)
        out[name] = (scheme, host, int(port))
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_the_broker_advertises_a_listener_for_the_containers(compose: dict[str, Any]) -> None:
    env = compose["services"]["pulsar"]["environment"]
    adv = listeners(env["PULSAR_PREFIX_advertisedListeners"])
    bind = listeners(env["PULSAR_PREFIX_bindAddresses"])
    assert env["advertisedAddress"] == ""  # Pulsar refuses advertisedAddress beside advertisedListeners
    internal = env["PULSAR_PREFIX_internalListenerName"]
    assert adv[internal] == ("pulsar", "localhost", 6650)  # brokerServicePort: bound by the broker itself
    assert adv["compose"][:2] == ("pulsar", "pulsar")  # the service name, resolvable on the compose network
    assert bind["compose"] == ("pulsar", "0.0.0.0", adv["compose"][2])  # bound where it is advertised
    assert internal not in bind  # already bound through brokerServicePort: listing it would bind twice
    published = {int(p.split(":")[0]) for p in compose["services"]["pulsar"]["ports"]}
    assert 6650 in published and adv["compose"][2] not in published


def test_every_pulse_container_connects_to_that_listener(compose: dict[str, Any]) -> None:
    adv = listeners(compose["services"]["pulsar"]["environment"]["PULSAR_PREFIX_advertisedListeners"])
    _, host, port = adv["compose"]
    pulse_services = {n: s for n, s in compose["services"].items() if s.get("image") == "pulse:local"}
    assert len(pulse_services) >= 4
    for name, svc in pulse_services.items():
        env = svc.get("environment") or {}
        if "PULSE_PULSAR__URL" not in env:
            continue  # a service that never talks to the broker
        assert env["PULSE_PULSAR__URL"] == f"pulsar://{host}:{port}", name
        assert env["PULSE_PULSAR__LISTENER_NAME"] == "compose", name


def test_the_listener_name_setting_reaches_the_client(tmp_path: Path) -> None:
    s = load_settings(environ={"PULSE_PULSAR__LISTENER_NAME": "compose", "PULSE_RUNTIME__HOME": str(tmp_path)})
    assert client_options(s, "pulsar://pulsar:6651")["listener_name"] == "compose"
    default = load_settings(environ={"PULSE_RUNTIME__HOME": str(tmp_path)})
    assert "listener_name" not in client_options(default, "pulsar://localhost:6650")
    with pytest.raises(ConfigError, match="listener_name"):
        load_settings(environ={"PULSE_PULSAR__LISTENER_NAME": "a b/c", "PULSE_RUNTIME__HOME": str(tmp_path)})
