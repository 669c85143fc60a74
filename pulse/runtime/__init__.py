"""The embedded runtime: a broker (pulsar-lite, or Apache Pulsar standalone) and PostgreSQL under one directory."""

from pulse.runtime.endpoints import Endpoints, attach_runtime, resolve_endpoints
from pulse.runtime.manager import Runtime, RuntimeStatus

__all__ = ["Endpoints", "Runtime", "RuntimeStatus", "attach_runtime", "resolve_endpoints"]
