"""Publishing from a second process: the ingester encodes, a publisher process owns the Pulsar client.

Why: a live ingester is one Python thread doing everything — read the socket, parse, encode, and build and
hand over every broker message (about 10-20 µs of CPU per message in the client's Python binding and its
producer, on the same thread). With :class:`OffloadedPublisher` the ingester only encodes and appends each
message to a frame; frames of up to ``max_batch`` messages go down a pipe to ``python -m pulse.publish_proc``,
which builds and sends them through an :class:`~pulse.bus.EventPublisher` of its own. The two run on two
cores; the pipe adds one frame hop (tens of µs) to the latency.

Protocol (length-prefixed MessagePack frames; ``<I`` little-endian length, then the frame):

parent → child
    ``["init", settings, url, namespace, producer_prefix]`` first; then ``["p", id, properties]`` (a
    properties dict, sent once per id), ``["m", [[topic, payload, props_id, key, ts_event, n, last_ts], …]]``,
    ``["w", topic, payload, properties, key]`` (raw bytes: dead letters), ``["f", token]`` (flush). End of
    input: flush, close, exit 0.
child → parent
    ``["r"]`` ready; ``["s", {topic: [acked, acked_events, failed]}, [[topic, ts_event, acked_ns], …],
    last_error, broker_disconnects, unconfirmed_since]`` counters as they change (every ~20 ms) with the sampled
    acks (the child's publisher settles a quiet topic's last messages on a timer, so these reach ``sent``
    without a later send);
    ``["f", token, error]`` once everything sent before the flush is answered; ``["x", error]`` fatal (the child exits).

Counts stay exact: the child counts each topic's messages in the order the parent sent them, so its acked
count for a topic is the parent's too. The child ignores SIGINT/SIGTERM (they reach the whole process group,
e.g. from systemd): it exits when the parent closes the pipe, after flushing what it got, so a stopping
ingester still gets every event acknowledged. If the parent dies, the pipe closes just the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import msgspec

from pulse.bus import AckHook, Bus, EventPublisher, PublisherBase, PublishStats, event_counts
from pulse.errors import BusError
from pulse.log import get_logger
from pulse.models import Event
from pulse.settings import Settings

log = get_logger(__name__)

_HEADER = 4
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def _frame(obj: Any) -> bytes:
    body = _enc.encode(obj)
    return len(body).to_bytes(_HEADER, "little") + body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self.buf += data
        out = []
        buf = self.buf
        pos = 0
        while len(buf) - pos >= _HEADER:
            size = int.from_bytes(buf[pos : pos + _HEADER], "little")
            if len(buf) - pos - _HEADER < size:
                break
            out.append(_dec.decode(buf[pos + _HEADER : pos + _HEADER + size]))
            pos += _HEADER + size
        if pos:
            del buf[:pos]
        return out


class OffloadedPublisher(PublisherBase):
    """The :class:`~pulse.bus.EventPublisher` interface, publishing through a child process (see the module).

    Messages are shipped when ``max_batch`` are waiting, and otherwise as soon as the running event loop gets
    control back (``call_soon``: after the ingester handled what one socket read brought); without a running
    loop, at once. Counters (``stats``) follow the child's reports; :meth:`flush` makes them exact.
    """

    def __init__(
        self,
        settings: Settings,
        url: str,
        namespace: str,
        *,
        producer_prefix: str,
        on_ack: AckHook | None = None,
        max_batch: int = 64,
        start_timeout_s: float | None = None,
    ) -> None:
        super().__init__(settings, namespace, producer_prefix=producer_prefix, on_ack=on_ack)
        self.max_batch = max_batch
        self._buf: list[tuple[str, bytes, int, str, int, int, int]] = []
        self._scheduled = False
        self._prop_ids: dict[type, int] = {}  # event type → the id of its properties in the child
        self._flush_token = 0
        self._flushed: dict[int, str] = {}
        self._reader = _FrameReader()
        self._closed = False
        self._fatal = ""  # the child's fatal error, once it reported one
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pulse.publish_proc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.pid = self._proc.pid
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._rfd, False)
        self._ready = False
        try:
            self._write(["init", msgspec.to_builtins(settings), url, namespace, producer_prefix])
            deadline = time.monotonic() + (start_timeout_s or settings.pulsar.operation_timeout_s + 10)
            while not self._ready:
                if not self._wait_readable(deadline - time.monotonic()):
                    raise BusError(f"the publisher process (pid {self.pid}) did not start in time")
                self._drain()
        except BaseException:
            self._kill()
            raise

    # -- publishing -------------------------------------------------------------------------------------
    def publish(self, event: Event, topic_name: str | None = None, *, sequence_id: int | None = None) -> None:
        if sequence_id is not None:  # live ingesters never re-send old events (see README "Broker deduplication")
            raise ValueError("the publisher process sends with the client's own sequence ids")
        t = topic_name or self.topic_for(event)
        n, last_ts = event_counts(event)
        st = self._stats.of(t)
        st.sent += 1
        st.sent_events += n
        pid = self._prop_ids.get(type(event))
        if pid is None:
            pid = self._register_props(event)
        buf = self._buf
        buf.append((t, self.codec.encode(event), pid, event.symbol, event.ts_event, n, last_ts))
        if len(buf) >= self.max_batch:
            self._ship()
        elif not self._scheduled:
            self._schedule()

    def publish_raw(self, topic_name: str, payload: bytes, properties: dict[str, str], key: str | None = None) -> None:
        """Publish bytes as they are (dead letters keep the venue's raw payload)."""
        self._ship()
        st = self._stats.of(topic_name)
        st.sent += 1
        st.sent_events += 1
        self._write(["w", topic_name, payload, properties, key])

    def flush(self) -> None:
        """Wait until the broker answered everything published so far; then every count is exact."""
        self._ship()
        self._flush_token += 1
        token = self._flush_token
        self._write(["f", token])
        while token not in self._flushed:
            self._wait_readable(None)
            self._drain()
        error = self._flushed.pop(token)
        if error:
            raise BusError(error)
        for st in self._stats.topics.values():
            st.settle(True, st.sent, st.sent_events)

    def close(self) -> None:
        """Flush, let the child close its client and exit; stopped by pid if it does not."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc.poll() is None and not self._fatal:
                self.flush()
        finally:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=self.settings.pulsar.operation_timeout_s)
            except subprocess.TimeoutExpired:
                self._kill()
            if self._proc.stdout is not None:
                self._proc.stdout.close()

    @property
    def stats(self) -> PublishStats:  # as of the child's latest report
        if not self._closed:
            self._drain()
        return self._stats

    # -- internals --------------------------------------------------------------------------------------
    def _register_props(self, event: Event) -> int:
        """Send the child the properties of ``event``'s type, once; return their id."""
        pid = self._prop_ids[type(event)] = len(self._prop_ids)
        self._write(["p", pid, self.properties_of(event)])
        return pid

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._ship()
            return
        self._scheduled = True
        loop.call_soon(self._ship)

    def _ship(self) -> None:
        self._scheduled = False
        if self._buf:
            batch, self._buf = self._buf, []
            self._write(["m", batch])
        self._drain()

    def _write(self, obj: Any) -> None:
        try:
            _write_all(self._wfd, _frame(obj))
        except (BrokenPipeError, ValueError) as exc:  # ValueError: the pipe was closed here
            self._fatal = self._exit_reason() or f"the publisher process is gone: {exc}"
            raise BusError(self._fatal) from exc

    def _wait_readable(self, timeout: float | None) -> bool:
        if timeout is not None and timeout <= 0:
            return False
        readable, _, _ = select.select([self._rfd], [], [], timeout)
        return bool(readable)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._rfd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                self._fatal = self._exit_reason() or "the publisher process closed its pipe"
                raise BusError(self._fatal)
            for frame in self._reader.feed(data):
                self._handle(frame)

    def _handle(self, frame: list[Any]) -> None:
        kind = frame[0]
        if kind == "s":
            _, counts, acks, last_error, disconnects, unconfirmed_since = frame
            self._stats.broker_disconnects = disconnects
            self._stats.unconfirmed_since = unconfirmed_since
            of = self._stats.of
            for t, (acked, acked_events, failed) in counts.items():
                st = of(t)
                st.acked, st.acked_events, st.failed = acked, acked_events, failed
            if last_error:
                self._stats.last_error = last_error
            if self._on_ack is not None:
                for t, ts_event, acked_ns in acks:
                    self._on_ack(t, ts_event, acked_ns)
        elif kind == "f":
            self._flushed[frame[1]] = frame[2]
        elif kind == "r":
            self._ready = True
        elif kind == "x":
            self._fatal = frame[1]
            raise BusError(frame[1])

    def _exit_reason(self) -> str:
        fatal = self._fatal
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return fatal
        return fatal or f"the publisher process (pid {self.pid}) exited with code {code}"

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def uses_publish_process(settings: Settings) -> bool:
    """Whether live ingesters publish through a publisher process (``pulsar.publish_process``)."""
    mode = settings.pulsar.publish_process
    return mode == "on" or (mode == "auto" and (os.cpu_count() or 1) >= 2)


def open_publisher(
    settings: Settings,
    url: str,
    namespace: str,
    *,
    producer_prefix: str,
    on_ack: AckHook | None = None,
    bus: Bus | None = None,
) -> OffloadedPublisher | EventPublisher:
    """A live ingester's publisher: offloaded to a publisher process, or in this process (see the setting)
    through ``bus`` (or a bus of its own). Close it when done (it flushes first)."""
    if uses_publish_process(settings):
        return OffloadedPublisher(settings, url, namespace, producer_prefix=producer_prefix, on_ack=on_ack)
    own = bus is None
    return EventPublisher(bus or Bus(settings, url), namespace, producer_prefix=producer_prefix, on_ack=on_ack,
                          owns_bus=own)  # fmt: skip


# -- the child --------------------------------------------------------------------------------------------
class _Reporter(threading.Thread):
    """Writes counters (when they change) and sampled acks every ``interval`` s, and flush replies in order."""

    def __init__(self, fd: int, stats: PublishStats, acks: list[list[Any]], interval: float = 0.02) -> None:
        super().__init__(name="publish-proc-reporter", daemon=True)
        self.fd = fd
        self.stats = stats  # the child's publisher's counters
        self.acks = acks  # sampled acks, appended by the client's I/O thread
        self.interval = interval
        self.replies: queue.Queue[list[Any] | None] = queue.Queue()
        self._sent: dict[str, tuple[int, int, int]] = {}
        self._disconnects = 0
        self._since = 0.0

    def run(self) -> None:
        while True:
            try:
                item = self.replies.get(timeout=self.interval)
            except queue.Empty:
                item = []
            self._report()
            if item is None:
                return
            if item:
                _write_all(self.fd, _frame(item))

    def _report(self) -> None:
        changed = {}
        for t, st in list(self.stats.topics.items()):
            now = (st.acked, st.acked_events, st.failed)
            if self._sent.get(t) != now:
                changed[t] = self._sent[t] = now
        acks = self.acks[:]
        del self.acks[: len(acks)]  # (what the I/O thread appended meanwhile stays for the next report)
        disconnects, since = self.stats.broker_disconnects, self.stats.unconfirmed_since
        if changed or acks or disconnects != self._disconnects or since != self._since:
            self._disconnects, self._since = disconnects, since
            _write_all(self.fd, _frame(["s", changed, acks, self.stats.last_error, disconnects, since]))


def _final_flush(pub: EventPublisher, timeout_s: float) -> None:
    """Flush what the parent sent before it closed the pipe, for at most ``timeout_s``. A parent that stopped
    cleanly flushed first, so this returns at once; one that was killed while the broker confirms nothing (a full
    disk, a frozen broker) would keep this process waiting for ever: past the deadline it exits 1, saying how many
    messages the broker never confirmed (the restarted ingester marks that hole with its gap markers)."""
    errors: list[BusError] = []

    def flush() -> None:
        try:
            pub.flush()
        except BusError as exc:
            errors.append(exc)

    worker = threading.Thread(target=flush, name="final-flush", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if errors:
        raise errors[0]
    if worker.is_alive():
        log.error("publisher process: the broker confirmed nothing in the final flush; exiting without it",
                  unconfirmed=pub.stats.pending, waited_s=timeout_s)  # fmt: skip
        logging.shutdown()
        os._exit(1)  # not bus.close(): it would flush, and wait, again


def _child_main() -> int:
    # SIGINT/SIGTERM go to the whole process group: the parent decides when this process ends (pipe closed)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # nothing printed by accident can corrupt the frame stream
    in_fd = 0
    reader = _FrameReader()

    def next_frames() -> list[Any] | None:
        while True:
            data = os.read(in_fd, 1 << 18)
            if not data:
                return None
            got = reader.feed(data)
            if got:
                return got

    first = next_frames()
    if not first or first[0][0] != "init":
        return 2
    _, raw_settings, url, namespace, prefix = first[0]
    frames = first[1:]
    settings = msgspec.convert(raw_settings, Settings)
    from pulse.log import register_secret, setup_logging

    setup_logging(settings.logging.level, settings.logging.format)
    for secret in settings.secrets():
        register_secret(secret)
    try:
        bus = Bus(settings, url)
    except BusError as exc:
        _write_all(out_fd, _frame(["x", str(exc)]))
        return 1
    acks: list[list[Any]] = []
    pub = EventPublisher(bus, namespace, producer_prefix=prefix,
                         on_ack=lambda t, ts_event, acked_ns: acks.append([t, ts_event, acked_ns]))  # fmt: skip
    reporter = _Reporter(out_fd, pub.stats, acks)
    reporter.start()
    _write_all(out_fd, _frame(["r"]))
    props: dict[int, dict[str, str]] = {}
    send = pub.send_encoded
    code = 0
    try:
        while True:
            for frame in frames:
                kind = frame[0]
                if kind == "m":
                    for t, payload, pid, key, ts_event, n, last_ts in frame[1]:
                        send(t, payload, props[pid], key, ts_event, n, last_ts)
                elif kind == "p":
                    props[frame[1]] = frame[2]
                elif kind == "w":
                    pub.publish_raw(frame[1], frame[2], frame[3], frame[4])
                elif kind == "f":
                    try:
                        pub.flush()
                        reporter.replies.put(["f", frame[1], ""])
                    except BusError as exc:
                        reporter.replies.put(["f", frame[1], str(exc)])
            got = next_frames()
            if got is None:
                break
            frames = got
        _final_flush(pub, settings.pulsar.exit_flush_timeout_s)
    except BusError as exc:
        log.error("publisher process failed", error=str(exc))
        reporter.replies.put(["x", str(exc)])
        code = 1
    finally:
        reporter.replies.put(None)
        reporter.join(timeout=10)
        try:
            bus.close()
        except BusError as exc:
            log.error("publisher process: close failed", error=str(exc))
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(_child_main())
