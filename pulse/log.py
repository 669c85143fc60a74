"""Structured logging: one event per line, ``key=value`` text or JSON, ISO-8601 UTC timestamps, secrets masked.

Use ``log = get_logger(__name__)`` then ``log.info("connected", url=url, symbols=3)``::

    2026-07-01T12:00:00.123Z INFO  ingesters.kraken.service: connected url=wss://ws.kraken.com/v2 symbols=3

Secrets registered with :func:`register_secret` (the settings' tokens and passwords, at start-up) are replaced
by ``***`` in every rendered line, whatever field or message they hide in. On a terminal, lines go through the
same rich console as progress bars and live views (:func:`console`), so a log line never breaks a bar.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def mask(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "***")
    return text


_CONSOLE: Any = None


def console() -> Any:
    """The process's stderr :class:`rich.console.Console`: progress bars and live views use it, and so does the
    log handler on a terminal (rich prints each line above a live display instead of through it)."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True)
    return _CONSOLE


def utc_iso(ts: float) -> str:
    """``2026-07-01T12:00:00.123Z`` (milliseconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; on a terminal through :func:`console` (plain writes otherwise: no rich cost in services)."""

    def emit(self, record: logging.LogRecord) -> None:
        isatty = getattr(self.stream, "isatty", None)
        if not (isatty and isatty()):  # a service's log file or pipe: no rich import, no rich cost
            super().emit(record)
            return
        try:
            from rich.text import Text

            console().print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        if self.fmt == "json":
            doc = {
                "ts": utc_iso(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            line = json.dumps(doc, default=str)
        else:
            ts = utc_iso(record.created)
            kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            line = f"{ts} {record.levelname:<5} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")
            if record.exc_info:
                line += "\n" + self.formatException(record.exc_info)
        return mask(line)


def _fmt(v: Any) -> str:
    """A field's value: as it is, quoted when it has a space; a dict, list or tuple as compact JSON (never a
    Python repr)."""
    if isinstance(v, (dict, list, tuple, set)):
        return json.dumps(sorted(v) if isinstance(v, set) else v, default=str, separators=(",", ":"))
    s = str(v)
    return json.dumps(s) if (" " in s or not s) else s


class StructLogger(logging.LoggerAdapter):
    """``log.info("event", key=value, ...)`` — keyword arguments become structured fields."""

    def log(self, level: int, msg: object, *args: Any, exc_info: Any = None, **fields: Any) -> None:  # type: ignore[override]
        if self.isEnabledFor(level):
            self.logger.log(level, msg, *args, exc_info=exc_info, extra={"fields": fields}, stacklevel=2)

    def debug(self, msg: object, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self.log(logging.DEBUG, msg, *args, **fields)

    def info(self, msg: object, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self.log(logging.INFO, msg, *args, **fields)

    def warning(self, msg: object, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self.log(logging.WARNING, msg, *args, **fields)

    def error(self, msg: object, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self.log(logging.ERROR, msg, *args, **fields)

    def exception(self, msg: object, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self.log(logging.ERROR, msg, *args, exc_info=True, **fields)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name), {})


def setup_logging(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream) if stream is not None else _ConsoleHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
