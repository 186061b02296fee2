"""Decision events out to the sorter: MQTT (paho-mqtt) when a broker is configured, else JSON lines. No Qt.

``publish(event)`` never blocks its caller (the window): it hands the event to the publisher's own thread. For
MQTT that thread first appends it to an on-disk outbox (``outbox.jsonl``, one JSON line per event), then sends
it with QoS 1 while the broker is there, at most ``WINDOW`` events in flight, and marks it delivered only when
the broker has acknowledged it. Events made while the broker is away wait in the outbox (memory holds only the
in-flight window) and go out in order once paho-mqtt has reconnected (its backoff: 1 s doubling up to 30 s);
whatever is still undelivered when the station stops goes out at its next start. Delivery is at least once: the
(decision id, kind) pair lets a sorter drop the rare duplicate (a message the broker got just before the
connection broke); the item id is not enough, an undone item's new decision shares it.

``sorting/<station>/status`` is retained: "online" once connected, "offline" on a clean stop, and the same
"offline" as the broker's last will when the station vanishes (crash, cable pulled).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from station.storage import DecisionRecord
from station.storage.images import station_folder

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"
OUTBOX_FILE = "outbox.jsonl"
OUTBOX_ACKED = "outbox.acked"  # byte offset in outbox.jsonl of the first event not yet acknowledged
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TOPIC_FORBIDDEN = set("+#/\0")


def decision_topic(station: str) -> str:
    return f"sorting/{check_station_for_topic(station)}/decision"


def status_topic(station: str) -> str:
    return f"sorting/{check_station_for_topic(station)}/status"


def check_station_for_topic(station: str) -> str:
    bad = sorted(_TOPIC_FORBIDDEN & set(station))
    if not station or bad:
        raise ValueError(f"station name {station!r} cannot be part of an MQTT topic"
                         + (f" (it contains {' '.join(map(repr, bad))})" if bad else ""))
    return station


def decision_event(record: DecisionRecord, bin_name: str) -> dict[str, Any]:
    """The JSON payload of one stored decision (README: "MQTT topics and payload")."""
    return {
        "item_id": record.item_id or f"decision-{record.id}",  # manual mode has no item: the decision names it
        "decision_id": record.id,
        "class": record.operator_label,
        "bin": bin_name,
        "confidence": None if record.confidence is None else round(float(record.confidence), 4),
        "kind": record.kind,
        "model_version": record.model_version,
        "station": record.station,
        "time": record.created_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "settle_ms": record.settle_ms,
    }


RETRACTED = "retracted"  # the event kind of a decision taken back (undo, or deleted from the history)


def retraction_event(record: DecisionRecord, bin_name: str, at: datetime) -> dict[str, Any]:
    """The payload saying a published decision no longer stands: its ids, class and bin, and when it was taken back.

    Its ``decision_id`` is the retracted decision's; the decision the operator makes instead has a new one.
    """
    return {**decision_event(record, bin_name), "kind": RETRACTED,
            "time": at.astimezone(timezone.utc).isoformat(timespec="milliseconds")}


class Outbox:
    """Events waiting for the broker's acknowledgement, kept on disk in order. Used by one thread only.

    ``append`` adds a line (flushed and fsynced: an event the station made survives a crash); ``peek`` reads the
    next events from a byte offset; ``ack`` moves the acknowledged mark. Once everything is acknowledged the file
    starts over, so it does not grow while the broker is there.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / OUTBOX_FILE
        self._mark = self.folder / OUTBOX_ACKED
        self._file = self.path.open("ab")
        self._drop_torn_tail()
        self.acked = self._read_mark()

    def _drop_torn_tail(self) -> None:
        """A crash in the middle of writing a line leaves half an event: cut it (that one event is lost; its
        decision is stored all the same)."""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            log.warning("outbox %s: dropping a torn last line (%d bytes)", self.path, len(data) - end)
            self._file.truncate(end)

    def _read_mark(self) -> int:
        try:
            mark = int(self._mark.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.warning("outbox %s: unreadable mark, sending everything again", self._mark)
            return 0
        return min(mark, self.path.stat().st_size)

    @property
    def size(self) -> int:
        return self._file.tell()

    def append(self, event: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def peek(self, offset: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` events from byte ``offset`` on, each with the offset just past it."""
        found: list[tuple[int, dict[str, Any]]] = []
        with self.path.open("rb") as f:
            f.seek(offset)
            while len(found) < limit:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break
                try:
                    found.append((f.tell(), json.loads(line)))
                except ValueError:
                    log.error("outbox %s: skipping an unreadable line at byte %d", self.path, f.tell() - len(line))
        return found

    def pending(self) -> int:
        """Events not acknowledged yet (counts lines: for the status bar and tests)."""
        with self.path.open("rb") as f:
            f.seek(self.acked)
            return sum(1 for line in f if line.endswith(b"\n"))

    def ack(self, offset: int) -> None:
        self.acked = offset
        if offset >= self.size:  # all delivered: start the file over
            self._file.truncate(0)
            self._file.seek(0)
            self.acked = 0
        temporary = self._mark.with_suffix(".tmp")
        temporary.write_text(str(self.acked))
        temporary.replace(self._mark)

    def close(self) -> None:
        self._file.close()


class EventPublisher(ABC):
    """Takes events on any thread without blocking; its own thread delivers them in order."""

    POLL_S = 0.05

    def __init__(self, name: str) -> None:
        self._incoming: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self.published = 0  # events delivered (acknowledged by the broker / written)
        self.failure: str | None = None  # why the thread stopped, if it did
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> EventPublisher:
        self._thread.start()
        return self

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def publish(self, event: Mapping[str, Any]) -> None:
        if self._closing.is_set():
            raise RuntimeError("publish() after close()")
        self._incoming.put(dict(event))
        self._wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout_s``, then stop (an MQTT outbox keeps the rest)."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s + 2.0)

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # visible in the status bar, and logged with its traceback
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("%s stopped", self._thread.name)

    def _take_incoming(self) -> list[dict[str, Any]]:
        taken = []
        while True:
            try:
                taken.append(self._incoming.get_nowait())
            except queue.Empty:
                return taken

    @abstractmethod
    def _serve(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """One line for the status bar."""


class JsonLinesPublisher(EventPublisher):
    """No broker configured: one JSON line per event to a file (appended) or to stdout (``path`` None)."""

    def __init__(self, path: Path | None) -> None:
        super().__init__("events-jsonl")
        self.path = path

    def _serve(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        stream: IO[str] = sys.stdout if self.path is None else self.path.open("a", encoding="utf-8")
        try:
            while True:
                closing = self._closing.is_set()
                for event in self._take_incoming():
                    stream.write(json.dumps(event, ensure_ascii=False) + "\n")
                    self.published += 1
                stream.flush()
                if closing:
                    return
                self._wake.wait(self.POLL_S)
                self._wake.clear()
        finally:
            if self.path is not None:
                stream.close()

    def describe(self) -> str:
        return f"events → {self.path or 'stdout'}"


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` -> host, port, tls, username, password."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"mqtt_url must look like mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"mqtt_url has a bad port: {url!r}") from None
    return {
        "host": parts.hostname, "port": port, "tls": parts.scheme == "mqtts",
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


class MqttPublisher(EventPublisher):
    """QoS 1 to ``sorting/<station>/decision`` through an on-disk outbox; retained online/offline status."""

    WINDOW = 16  # events handed to paho and not yet acknowledged
    KEEPALIVE_S = 30
    RECONNECT_S = (1, 30)  # paho's backoff: first delay, doubling up to the second

    def __init__(self, url: str, station: str, outbox_dir: Path) -> None:
        super().__init__("events-mqtt")
        import paho.mqtt.client as mqtt

        self.target = parse_mqtt_url(url)
        self.url = url
        self.topic = decision_topic(station)
        self.status = status_topic(station)
        self.outbox = Outbox(outbox_dir)
        self.connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"sorting-station-{station}-{uuid.uuid4().hex[:8]}")
        if self.target["username"]:
            self._client.username_pw_set(self.target["username"], self.target["password"])
        if self.target["tls"]:
            self._client.tls_set()
        self._client.will_set(self.status, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(*self.RECONNECT_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason)
            return
        log.info("MQTT: connected to %s", self.url)
        client.publish(self.status, ONLINE, qos=1, retain=True)
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connected.is_set() and not self._closing.is_set():
            log.warning("MQTT: connection to %s lost (%s); reconnecting", self.url, reason)
        self.connected.clear()

    def _serve(self) -> None:
        self._client.connect_async(self.target["host"], self.target["port"], self.KEEPALIVE_S)
        self._client.loop_start()  # paho's network thread: connects, and reconnects with backoff
        in_flight: deque[tuple[int, Any]] = deque()  # (outbox offset past the event, paho's message info)
        sent_to = self.outbox.acked
        deadline: float | None = None
        try:
            while True:
                for event in self._take_incoming():
                    self.outbox.append(event)
                # Acknowledged in order: the outbox mark only moves past events the broker has.
                while in_flight and in_flight[0][1].is_published():
                    self.outbox.ack(in_flight.popleft()[0])
                    self.published += 1
                if not in_flight:
                    sent_to = self.outbox.acked  # the outbox may have started over
                # Hand new events to paho only while connected: paho itself re-sends the ones in flight after a
                # reconnect, so sending them again from here would duplicate them.
                if self.connected.is_set() and len(in_flight) < self.WINDOW:
                    for offset, event in self.outbox.peek(sent_to, self.WINDOW - len(in_flight)):
                        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                        in_flight.append((offset, self._client.publish(self.topic, payload, qos=1)))
                        sent_to = offset
                if self._closing.is_set():
                    deadline = deadline or time.monotonic() + self._close_timeout
                    if (not in_flight and sent_to >= self.outbox.size) or time.monotonic() > deadline:
                        break
                self._wake.wait(self.POLL_S)
                self._wake.clear()
        finally:
            self._stop_client()
            self.outbox.close()

    _close_timeout = 5.0

    def close(self, timeout_s: float = 5.0) -> None:
        self._close_timeout = timeout_s if self.connected.is_set() else 0.0
        super().close(timeout_s)

    def _stop_client(self) -> None:
        if self.connected.is_set():
            info = self._client.publish(self.status, OFFLINE, qos=1, retain=True)  # a clean stop sends no will
            with contextlib.suppress(RuntimeError):  # the connection went meanwhile: the will says "offline"
                info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()

    def describe(self) -> str:
        if self.failure:
            return f"MQTT stopped: {self.failure}"
        state = "connected" if self.connected.is_set() else "reconnecting"
        return f"MQTT {state}, {self.published} sent"


def event_paths(station: str, data_dir: Path, shared: bool) -> tuple[Path, Path]:
    """(MQTT outbox folder, default JSON-lines file). Beside a shared database several stations share the data
    folder: each gets its own, since one outbox would send every station's events under each station's topic."""
    events = Path(data_dir) / "events"
    if not shared:
        return events, Path(data_dir) / "events.jsonl"
    own = station_folder(station)
    return events / own, events / f"{own}.jsonl"


def open_publisher(
    mqtt_url: str, events_file: str, station: str, data_dir: Path, shared: bool = False
) -> EventPublisher:
    """MQTT when ``mqtt_url`` is set (outbox on disk), else JSON lines ("-" = stdout); ``shared``: the data folder
    is shared with other stations (a database URL is set). Started."""
    outbox, default_file = event_paths(station, data_dir, shared)
    if mqtt_url:
        return MqttPublisher(mqtt_url, station, outbox).start()
    if events_file == "-":
        return JsonLinesPublisher(None).start()
    return JsonLinesPublisher(Path(events_file).expanduser() if events_file else default_file).start()
