"""Where the broker and the database are: settings first, else the running embedded runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pulse.errors import BrokerUnavailable, DatabaseUnavailable
from pulse.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    pulsar_url: str
    database_url: str
    embedded: bool  # True when at least one endpoint is the embedded runtime
    broker_metrics_url: str = ""
    admin_url: str = ""  # Apache Pulsar's admin REST (empty on pulsar-lite)
    broker_kind: str = "lite"  # "lite" | "apache" (a cluster with pulsar.admin_url set counts as apache)


def resolve_endpoints(settings: Settings, *, need_pulsar: bool = True, need_database: bool = True) -> Endpoints:
    """Resolve URLs: ``pulsar.url``/``database.url`` when set, else the runtime started by ``pulse up``."""
    from pulse.runtime.manager import Runtime

    pulsar_url = settings.pulsar.url
    db_url = settings.database_url()
    metrics = ""
    admin_url = settings.pulsar.admin_url
    kind = "apache" if admin_url else "lite"  # a Pulsar admin API means Apache Pulsar; pulsar-lite has none
    embedded = False
    if (need_pulsar and not pulsar_url) or (need_database and not db_url):
        st = Runtime(settings).status()
        if need_pulsar and not pulsar_url:
            if not st.broker_running or not st.broker:
                raise BrokerUnavailable(
                    f"no broker: set pulsar.url, or start the embedded runtime with `pulse up` (home {st.home})"
                )
            pulsar_url, metrics, embedded = st.broker["url"], st.broker["metrics_url"], True
            kind = st.broker.get("kind", "lite")
            admin_url = admin_url or st.broker.get("admin_url", "")
        if need_database and not db_url:
            if not st.postgres_running or not st.postgres:
                raise DatabaseUnavailable(
                    f"no database: set database.url, or start the embedded runtime with `pulse up` (home {st.home})"
                )
            db_url, embedded = embedded_database_url(st.postgres), True
    return Endpoints(
        pulsar_url=pulsar_url,
        database_url=db_url,
        embedded=embedded,
        broker_metrics_url=metrics,
        admin_url=admin_url,
        broker_kind=kind,
    )


def embedded_database_url(postgres: dict[str, Any]) -> str:
    """The embedded server's URL from ``runtime.json`` with the superuser password (read from its 0600 file,
    registered with the log masker) put in: the password is in no state file and on no command line."""
    from pulse.log import register_secret
    from pulse.runtime.postgres import read_password

    url: str = postgres["url"]
    password = read_password(postgres["password_file"]) if postgres.get("password_file") else ""
    if not password:
        return url
    register_secret(password)
    scheme, _, rest = url.partition("://")
    user, at, hostpath = rest.partition("@")
    return f"{scheme}://{user}:{quote(password, safe='')}@{hostpath}" if at else url


def attach_runtime(settings: Settings) -> Settings:
    """Point ``pulsar.url`` and ``pulsar.admin_url`` at the embedded Apache Pulsar when ``pulse up`` runs one.

    Every command loads its settings through this, so ``pulse symbols add`` provisions through the real admin API
    and the consumers choose Key_Shared, exactly as against a remote cluster. pulsar-lite leaves them empty."""
    if settings.pulsar.url or settings.pulsar.admin_url:
        return settings
    from pulse.runtime.manager import Runtime

    st = Runtime(settings).status()
    b = st.broker or {}
    if b.get("kind") != "apache" or not st.broker_running:
        return settings
    return settings.with_overrides(
        "the running embedded broker (runtime.json)", pulsar={"url": b["url"], "admin_url": b["admin_url"]}
    )
