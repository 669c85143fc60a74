"""The alerting service's configuration that needs no broker: the subscription type (``auto`` → Shared on the
embedded pulsar-lite, Key_Shared on a real cluster) and the subscribed topics no rule reads (skipped undecoded)."""

from __future__ import annotations

import pytest

from consumers.alerting.rules import make_rule
from consumers.alerting.service import AlertingService, topics_for_rules
from pulse.runtime import Endpoints
from pulse.settings import Settings

EP = Endpoints(pulsar_url="pulsar://127.0.0.1:1", database_url="postgresql://u:p@127.0.0.1:1/db", embedded=True)


def service(url: str = "", kind: str = "auto", topics: list[str] | None = None) -> AlertingService:
    s = Settings().with_overrides(pulsar={"url": url}, alerting={"subscription_type": kind})
    r = make_rule("spread", {"id": 1, "venue": "kraken", "symbol": "BTC/USD", "bps": 5})
    return AlertingService(s, EP, topics, rules=[r])


@pytest.mark.parametrize(
    ("url", "kind", "want"),
    [
        ("", "auto", "shared"),
        ("pulsar://broker:6650", "auto", "key_shared"),
        ("", "key_shared", "key_shared"),
        ("pulsar://broker:6650", "shared", "shared"),
    ],
)
def test_subscription_type(url: str, kind: str, want: str) -> None:
    assert service(url, kind).consumer_type() == want


def test_topics_no_rule_reads_are_skipped() -> None:
    s = Settings()
    r = make_rule("spread", {"id": 1, "venue": "kraken", "symbol": "BTC/USD", "bps": 5})
    needed = topics_for_rules(s, [r])
    assert needed == ["persistent://market-data/crypto/kraken.BTC-USD.quote"]
    extra = "persistent://market-data/crypto/kraken.ETH-USD.quote"
    assert service(topics=[*needed, extra])._skip_topics([r]) == {extra}
    assert service()._skip_topics([r]) == frozenset()  # topics derived from the rules: nothing to skip
