"""Pulse's exception tree and the ``pulse`` command's exit codes (the one place both are defined).

Every error Pulse raises on purpose derives from :class:`PulseError` and carries the exit code the CLI ends with
(``cli.py`` maps it with :func:`exit_code_for`)::

    PulseError
    ├── ConfigError          a setting, CLI argument or config file is invalid (refused before anything starts)
    ├── SymbolError          a symbol or instrument name is malformed or unknown
    ├── TopicError           a topic name cannot be built or parsed
    ├── CodecError           a payload cannot be encoded or decoded
    ├── RuntimeStateError    the embedded runtime (broker + database) is not in the state a command needs
    │   └── PortInUseError   a configured port is already taken
    ├── BusError             the Pulsar client failed (connect, produce, subscribe); wraps pulsar.* errors
    ├── VenueError           a venue refused something (bad symbol, auth); never raised for a malformed frame
    │   └── FatalVenueError  retrying cannot help (bad credentials): the ingester stops with this message
    └── UnavailableError     a dependency cannot be reached (exit 69)
        ├── BrokerUnavailable    (also a BusError)
        ├── DatabaseUnavailable
        └── VenueUnavailable     (also a VenueError)

Library errors are mapped at the boundary with ``raise PulseError(...) from exc``; a library's connection error
that escapes (or is the ``__cause__`` of a Pulse error) still ends the command with 69, see :func:`exit_code_for`.
"""

from __future__ import annotations

#: Exit codes of every ``pulse`` command (documented in the README, "CLI").
EXIT_OK = 0  #: done, healthy
EXIT_FAILED = 1  #: unhealthy, or the work failed (a backfill with every hour missing, a rejected order)
EXIT_USAGE = 2  #: a bad argument, setting or config file: refused before anything started
EXIT_UNAVAILABLE = 69  #: EX_UNAVAILABLE (sysexits.h): the broker, the database or a venue cannot be reached
EXIT_INTERRUPTED = 130  #: 128 + SIGINT: Ctrl-C ended a command before it finished


class PulseError(Exception):
    """Root of every error Pulse raises on purpose. ``exit_code``: how ``pulse`` ends when this escapes; by
    default 2 for a refused input (a subclass of ``ValueError``), else 1."""

    exit_code: int | None = None


class ConfigError(PulseError):
    """A setting, CLI argument or config file is invalid."""

    exit_code = EXIT_USAGE


class SymbolError(PulseError, ValueError):
    """A symbol or instrument name is malformed or unknown."""


class TopicError(PulseError, ValueError):
    """A topic name cannot be built or parsed."""


class CodecError(PulseError, ValueError):
    """A payload cannot be encoded or decoded."""

    exit_code = EXIT_FAILED  # data that came in, not an argument the user gave


class RuntimeStateError(PulseError):
    """The embedded runtime is not in the state the command needs."""


class PortInUseError(RuntimeStateError):
    """A configured port is already taken by another process (a setting to change: exit 2)."""

    exit_code = EXIT_USAGE

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


class UnavailableError(PulseError):
    """A dependency (the broker, the database, a venue) cannot be reached: exit 69 (EX_UNAVAILABLE)."""

    exit_code = EXIT_UNAVAILABLE


class BrokerUnavailable(UnavailableError, BusError):
    """The Pulsar broker cannot be reached (or none is configured or running)."""


class DatabaseUnavailable(UnavailableError):
    """The database cannot be reached (or none is configured or running)."""


class VenueUnavailable(UnavailableError, VenueError):
    """A venue (or a local venue) cannot be reached."""


def _unreachable(exc: BaseException) -> str:
    """What ``exc`` says cannot be reached (``broker``, ``database``, ``venue``), or "" when it is not a connection
    failure. Library types are recognised by name: checking costs no import of pulsar, psycopg or aiohttp."""
    if isinstance(exc, PulseError) and exc.exit_code == EXIT_UNAVAILABLE:
        named = getattr(exc, "unreachable", "")  # e.g. "broker admin API"
        return named or (
            "broker" if isinstance(exc, BusError) else "database" if isinstance(exc, DatabaseUnavailable) else "venue"
        )
    module, name = type(exc).__module__, type(exc).__name__
    if module.startswith(("_pulsar", "pulsar")) and name in ("ConnectError", "Timeout", "LookupError"):
        return "broker"
    if module.startswith(("psycopg", "sqlalchemy")) and name == "OperationalError":
        return "database"
    if module.startswith("aiohttp") and name.startswith(("ClientConnector", "ServerDisconnected", "ServerTimeout")):
        return "venue"
    if isinstance(exc, BrokenPipeError):  # our own output's reader went away: nothing is unreachable
        return ""
    if isinstance(exc, (ConnectionError, TimeoutError)) or (module == "socket" and name == "gaierror"):
        return "venue"
    return ""


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a command that ended with ``exc``.

    Ctrl-C → 130. A connection failure anywhere in its chain of causes (``raise … from exc``) → 69. Otherwise the
    first code a Pulse error in the chain sets; a ``ValueError`` subclass of :class:`PulseError` (a refused input)
    → 2; anything else → 1."""
    if interrupted(exc):
        return EXIT_INTERRUPTED
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain and len(chain) < 20:
        chain.append(e)
        e = e.__cause__
    if any(_unreachable(e) for e in chain):
        return EXIT_UNAVAILABLE
    for e in chain:
        if isinstance(e, PulseError) and e.exit_code is not None:
            return e.exit_code
    if isinstance(exc, PulseError) and isinstance(exc, ValueError):
        return EXIT_USAGE
    return EXIT_FAILED


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or the Pulsar client's ``Interrupted`` (its blocking calls check for signals
    and end with that instead)."""
    return isinstance(exc, KeyboardInterrupt) or (
        type(exc).__module__.startswith(("_pulsar", "pulsar")) and type(exc).__name__ == "Interrupted"
    )


def unreachable_what(exc: BaseException) -> str:
    """``broker``, ``database`` or ``venue`` when ``exc`` (or a cause of it) is a connection failure, else ""."""
    e: BaseException | None = exc
    for _ in range(20):
        if e is None:
            return ""
        what = _unreachable(e)
        if what:
            return what
        e = e.__cause__
    return ""
