"""Subscriptions a killed gateway left on the broker: each gateway records its own, the next one removes them.

A gateway reads every topic through a durable Shared subscription of its own (:mod:`web.feeds`) and
unsubscribes at shutdown. Killed with SIGKILL it cannot, and the broker keeps the subscription — and a growing
backlog for it — for ever. So each gateway writes, under ``<home>/web/subscriptions/``, one JSON file per
process: its subscription name, its pid and host, and every topic it subscribed (rewritten, atomically, as it
subscribes more). A clean shutdown deletes the file after unsubscribing. Once it is ready, a gateway looks at the files
of this host whose process is gone and removes their subscriptions the way any client can, on any broker,
without an admin API: it subscribes under the dead gateway's name and unsubscribes at once. A file is deleted
only when all of its topics were cleaned; a failure is logged and retried at the next start.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from pulse.log import get_logger
from pulse.runtime.procs import pid_alive

log = get_logger(__name__)


def records_dir(home: Path) -> Path:
    return Path(home) / "web" / "subscriptions"


class Record:
    """This process's file: the subscription name and the topics subscribed under it."""

    def __init__(self, home: Path, subscription: str) -> None:
        self.path = records_dir(home) / f"{subscription}.json"
        self.subscription = subscription
        self.topics: list[str] = []

    def add(self, topic: str) -> None:
        if topic in self.topics:
            return
        self.topics.append(topic)
        self._write()

    def _write(self) -> None:
        doc = {"subscription": self.subscription, "pid": os.getpid(), "host": socket.gethostname(),
               "topics": self.topics}  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def stale_records(home: Path, keep: str = "") -> list[tuple[Path, dict[str, Any]]]:
    """The records of gateways of this host whose process is gone (unreadable files included, to be removed).
    ``keep`` names the caller's own subscription, whose record is never stale."""
    out = []
    host = socket.gethostname()
    for path in sorted(records_dir(home).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            pid, topics, sub = int(doc["pid"]), list(doc["topics"]), str(doc["subscription"])
        except (OSError, ValueError, KeyError, TypeError):
            out.append((path, {"subscription": "", "topics": []}))
            continue
        if doc.get("host") != host or sub == keep or (pid_alive(pid) and pid != os.getpid()):
            continue  # another machine's, this gateway's own, or a gateway still running
        out.append((path, {"subscription": sub, "topics": topics, "pid": pid}))
    return out


def remove_stale(client: Any, home: Path, keep: str = "") -> list[tuple[str, str]]:
    """Unsubscribe what dead gateways of this host left (never ``keep``, the caller's own subscription); returns
    the (subscription, topic) pairs removed. Blocking (the client's calls): run it on a thread."""
    import pulsar

    removed: list[tuple[str, str]] = []
    for path, doc in stale_records(home, keep):
        left = 0
        for topic in doc["topics"]:
            try:
                consumer = client.subscribe(topic, doc["subscription"], consumer_type=pulsar.ConsumerType.Shared)
                consumer.unsubscribe()
                removed.append((doc["subscription"], topic))
            except Exception as exc:
                left += 1
                log.warning("could not remove a dead gateway's subscription", subscription=doc["subscription"],
                            topic=topic, error=str(exc)[:200])  # fmt: skip
        if not left:
            path.unlink(missing_ok=True)
            if doc["topics"]:
                log.info("removed a dead gateway's subscriptions", subscription=doc["subscription"],
                         pid=doc.get("pid"), topics=len(doc["topics"]))  # fmt: skip
    return removed
