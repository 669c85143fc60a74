"""Settings that name an external broker and database take the same code path as the embedded runtime."""

from __future__ import annotations

import pulsar
import pytest

from pulse.bus import Bus, EventPublisher, client_options
from pulse.errors import BusError
from pulse.runtime import Endpoints, resolve_endpoints
from pulse.settings import Settings, load_settings
from tests.conftest import make_settings


def test_explicit_urls_win_over_the_runtime(tmp_path, endpoints: Endpoints) -> None:
    # a home with no runtime at all: only the explicit settings can make this work
    s = make_settings(tmp_path, PULSE_PULSAR__URL=endpoints.pulsar_url, PULSE_DATABASE__URL=endpoints.database_url)
    ep = resolve_endpoints(s)
    assert ep == Endpoints(endpoints.pulsar_url, endpoints.database_url, embedded=False)


def test_token_auth_client_publishes(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    """A token is sent on connect (pulsar-lite accepts any token; a real cluster checks it)."""
    s = runtime_settings.with_overrides(pulsar={"url": endpoints.pulsar_url, "auth_token": f"tok-{unique}"})
    opts = client_options(s, endpoints.pulsar_url)
    assert isinstance(opts["authentication"], pulsar.AuthenticationToken)
    bus = Bus(s, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "control", producer_prefix="t")
        pub.publish_raw(f"persistent://market-data/control/auth-{unique}", b"x", {})
        pub.flush()
        assert pub.stats.total_acked == 1
    finally:
        bus.close()


def test_tls_options_follow_the_settings() -> None:
    s = load_settings(
        environ={
            "PULSE_PULSAR__TLS_TRUST_CERTS_FILE": "/etc/ssl/ca.pem",
            "PULSE_PULSAR__TLS_VALIDATE_HOSTNAME": "false",
        }
    )
    opts = client_options(s, "pulsar+ssl://broker.example:6651")
    assert opts["use_tls"] is True and opts["tls_trust_certs_file_path"] == "/etc/ssl/ca.pem"
    assert opts["tls_validate_hostname"] is False
    assert "use_tls" not in client_options(s, "pulsar://broker.example:6650")
    with pytest.raises(BusError, match="must start with pulsar://"):
        client_options(s, "http://broker.example:8080")
