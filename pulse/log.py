"""Structured logging: one event per line, ``key=value`` text or JSON, secrets masked.

Use ``log = get_logger(__name__)`` then ``log.info("connected", url=url, symbols=3)``. Secrets registered
with :func:`register_secret` (the settings' tokens and passwords, at start-up) are replaced by ``***`` in
every rendered line, whatever field or message they hide in.
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


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        if self.fmt == "json":
            doc = {
                "ts": round(record.created, 6),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            line = json.dumps(doc, default=str)
        else:
            ts = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
            kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            line = f"{ts} {record.levelname:<5} {record.name}: {record.getMessage()}" + (f" {kv}" if kv else "")
            if record.exc_info:
                line += "\n" + self.formatException(record.exc_info)
        return mask(line)


def _fmt(v: Any) -> str:
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
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
