"""Pulse's exception tree. Every error Pulse raises on purpose derives from :class:`PulseError`.

::

    PulseError
    ├── ConfigError          a setting, CLI argument or config file is invalid (refused before anything starts)
    ├── SymbolError          a symbol or instrument name is malformed or unknown
    ├── TopicError           a topic name cannot be built or parsed
    ├── CodecError           a payload cannot be encoded or decoded
    ├── RuntimeStateError    the embedded runtime (broker + database) is not in the state a command needs
    │   └── PortInUseError   a configured port is already taken
    ├── BusError             the Pulsar client failed (connect, produce, subscribe); wraps pulsar.* errors
    └── VenueError           a venue refused something (bad symbol, auth); never raised for a malformed frame
        └── FatalVenueError  retrying cannot help (bad credentials): the ingester stops with this message

Library errors are mapped at the boundary with ``raise PulseError(...) from exc``.
"""

from __future__ import annotations


class PulseError(Exception):
    """Root of every error Pulse raises on purpose."""


class ConfigError(PulseError):
    """A setting, CLI argument or config file is invalid."""


class SymbolError(PulseError, ValueError):
    """A symbol or instrument name is malformed or unknown."""


class TopicError(PulseError, ValueError):
    """A topic name cannot be built or parsed."""


class CodecError(PulseError, ValueError):
    """A payload cannot be encoded or decoded."""


class RuntimeStateError(PulseError):
    """The embedded runtime is not in the state the command needs."""


class PortInUseError(RuntimeStateError):
    """A configured port is already taken by another process."""

    def __init__(self, name: str, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} (setting {name}) is already in use; choose another")
        self.name = name
        self.port = port


class BusError(PulseError):
    """The Pulsar client failed."""


class VenueError(PulseError):
    """A venue refused a request."""


class FatalVenueError(VenueError):
    """A venue error that retrying cannot fix, such as rejected credentials."""
