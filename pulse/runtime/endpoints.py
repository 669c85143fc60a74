"""Where the broker and the database are: settings first, else the running embedded runtime."""

from __future__ import annotations

from dataclasses import dataclass

from pulse.errors import RuntimeStateError
from pulse.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    pulsar_url: str
    database_url: str
    embedded: bool  # True when at least one endpoint is the embedded runtime
    broker_metrics_url: str = ""


def resolve_endpoints(settings: Settings, *, need_pulsar: bool = True, need_database: bool = True) -> Endpoints:
    """Resolve URLs: ``pulsar.url``/``database.url`` when set, else the runtime started by ``pulse up``."""
    from pulse.runtime.manager import Runtime

    pulsar_url = settings.pulsar.url
    db_url = settings.database_url()
    metrics = ""
    embedded = False
    if (need_pulsar and not pulsar_url) or (need_database and not db_url):
        st = Runtime(settings).status()
        if need_pulsar and not pulsar_url:
            if not st.broker_running or not st.broker:
                raise RuntimeStateError(
                    f"no broker: set pulsar.url, or start the embedded runtime with `pulse up` (home {st.home})"
                )
            pulsar_url, metrics, embedded = st.broker["url"], st.broker["metrics_url"], True
        if need_database and not db_url:
            if not st.postgres_running or not st.postgres:
                raise RuntimeStateError(
                    f"no database: set database.url, or start the embedded runtime with `pulse up` (home {st.home})"
                )
            db_url, embedded = st.postgres["url"], True
    return Endpoints(pulsar_url=pulsar_url, database_url=db_url, embedded=embedded, broker_metrics_url=metrics)
