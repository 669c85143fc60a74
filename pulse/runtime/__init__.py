"""The embedded runtime: a pulsar-lite broker and a PostgreSQL server under one directory (``pulse up``)."""

from pulse.runtime.endpoints import Endpoints, resolve_endpoints
from pulse.runtime.manager import Runtime, RuntimeStatus

__all__ = ["Endpoints", "Runtime", "RuntimeStatus", "resolve_endpoints"]
