"""Decision events through a real mosquitto broker: each once and in order, across a broker restart; the
retained online/offline status, and the last will when the station's process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from station.events import MqttPublisher, event_paths
from tests.integration.broker import MOSQUITTO, NO_BROKER, Broker, Subscriber, wait_until

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=NO_BROKER)

STATION = "line-7"
DECISIONS = f"sorting/{STATION}/decision"
STATUS = f"sorting/{STATION}/status"


@pytest.fixture
def broker(tmp_path: Path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def sorter(broker: Broker):
    subscriber = Subscriber(broker, f"sorting/{STATION}/#")
    wait_until(subscriber.connected.is_set, 10, "the subscriber to connect")
    yield subscriber
    subscriber.close()


def event(n: int) -> dict:
    return {"item_id": f"s-{n}", "class": "glass", "bin": "glass", "confidence": 0.9, "kind": "auto",
            "model_version": "tiny-v1", "station": STATION, "time": f"2025-01-01T00:00:{n:02d}+00:00"}


def received_ids(sorter: Subscriber) -> list[str]:
    return [json.loads(payload)["item_id"] for payload in sorter.on(DECISIONS)]


def test_every_event_arrives_once_in_order_also_those_made_while_the_broker_was_down(
    broker: Broker, sorter: Subscriber, tmp_path: Path
) -> None:
    publisher = MqttPublisher(broker.url, STATION, tmp_path / "outbox").start()
    try:
        wait_until(publisher.connected.is_set, 10, "the station to connect")
        wait_until(lambda: sorter.on(STATUS)[-1:] == [b"online"], 10, "the retained 'online' status")
        for n in range(1, 6):
            publisher.publish(event(n))
        wait_until(lambda: len(received_ids(sorter)) >= 5, 15, "the first five events")
        # QoS 1 is at least once: a message whose acknowledgement the broker takes down with it is sent again
        # (the sorter drops it by item id). Stopping the broker once the station has every acknowledgement keeps
        # this test about the outbox, not about that window.
        wait_until(lambda: publisher.published == 5, 10, "the broker's acknowledgements")

        broker.stop()
        wait_until(lambda: not publisher.connected.is_set(), 10, "the station to notice the broker is gone")
        for n in range(6, 11):
            publisher.publish(event(n))
        wait_until(lambda: publisher.outbox.pending() == 5, 5, "five events waiting in the outbox on disk")
        assert received_ids(sorter) == [f"s-{n}" for n in range(1, 6)]

        broker.start()
        wait_until(lambda: len(received_ids(sorter)) >= 10, 60, "the events made while the broker was down")
        wait_until(lambda: publisher.outbox.pending() == 0, 10, "the outbox to be empty")
    finally:
        publisher.close()
    wait_until(lambda: sorter.on(STATUS)[-1:] == [b"offline"], 10, "'offline' after a clean stop")
    assert received_ids(sorter) == [f"s-{n}" for n in range(1, 11)]  # once each, in order
    assert publisher.published == 10
    payload = json.loads(sorter.on(DECISIONS)[0])
    assert payload == event(1)


def test_two_stations_sharing_a_data_folder_send_only_their_own_events(broker: Broker, tmp_path: Path) -> None:
    """Beside a shared database the data folder is shared: one outbox for both would send each station's events
    under the other's topic too."""
    sorter = Subscriber(broker, "sorting/+/decision")
    wait_until(sorter.connected.is_set, 10, "the subscriber to connect")
    names = ("line-a", "line-b")
    publishers = [MqttPublisher(broker.url, name, event_paths(name, tmp_path, shared=True)[0]).start()
                  for name in names]
    try:
        for publisher in publishers:
            wait_until(publisher.connected.is_set, 10, "the stations to connect")
        for n in range(1, 6):
            for publisher, name in zip(publishers, names, strict=True):
                publisher.publish({**event(n), "item_id": f"{name}-{n}", "station": name})
        for publisher in publishers:
            wait_until(lambda p=publisher: p.published == 5 and p.outbox.pending() == 0, 15, "every acknowledgement")
    finally:
        for publisher in publishers:
            publisher.close()
        sorter.close()
    for name in names:
        got = [json.loads(payload)["item_id"] for payload in sorter.on(f"sorting/{name}/decision")]
        assert got == [f"{name}-{n}" for n in range(1, 6)]


def test_events_left_in_the_outbox_go_out_at_the_next_start(broker: Broker, sorter: Subscriber,
                                                            tmp_path: Path) -> None:
    broker.stop()
    first = MqttPublisher(broker.url, STATION, tmp_path / "outbox").start()
    for n in range(1, 4):
        first.publish(event(n))
    wait_until(lambda: first.outbox.pending() == 3, 5, "three events in the outbox")
    first.close()  # the station stops while the broker is away
    broker.start()
    second = MqttPublisher(broker.url, STATION, tmp_path / "outbox").start()
    try:
        second.publish(event(4))
        wait_until(lambda: len(received_ids(sorter)) >= 4, 60, "the events of the previous run, then the new one")
    finally:
        second.close()
    assert received_ids(sorter) == ["s-1", "s-2", "s-3", "s-4"]


CHILD = """
import sys, time
from pathlib import Path
from station.events import MqttPublisher
publisher = MqttPublisher(sys.argv[1], sys.argv[2], Path(sys.argv[3])).start()
publisher.connected.wait(10)
print("connected", flush=True)
time.sleep(120)
"""


def test_the_last_will_says_offline_when_the_station_is_killed(broker: Broker, sorter: Subscriber,
                                                               tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.url, STATION, str(tmp_path / "outbox")],
                             stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"connected"
        wait_until(lambda: sorter.on(STATUS)[-1:] == [b"online"], 10, "'online'")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: sorter.on(STATUS)[-1:] == [b"offline"], 20, "the last will")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
