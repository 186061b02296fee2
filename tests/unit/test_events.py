"""The outbox on disk, the JSON-lines publisher, topics and broker URLs (the broker itself: tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.events import (
    JsonLinesPublisher,
    Outbox,
    decision_topic,
    event_paths,
    open_publisher,
    parse_mqtt_url,
    status_topic,
)


def test_outbox_keeps_unacknowledged_events_in_order_across_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    for n in range(5):
        outbox.append({"n": n})
    taken = outbox.peek(outbox.acked, 3)
    assert [event["n"] for _, event in taken] == [0, 1, 2]
    outbox.ack(taken[1][0])  # the broker has 0 and 1
    assert outbox.pending() == 3
    outbox.close()

    again = Outbox(tmp_path)  # the station starts again
    assert [event["n"] for _, event in again.peek(again.acked, 10)] == [2, 3, 4]
    last = again.peek(again.acked, 10)[-1][0]
    again.ack(last)
    assert again.pending() == 0 and again.size == 0  # all delivered: the file starts over
    again.append({"n": 5})
    assert [event["n"] for _, event in again.peek(again.acked, 10)] == [5]


def test_outbox_cuts_a_torn_last_line(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.append({"n": 1})
    outbox.close()
    with (tmp_path / "outbox.jsonl").open("ab") as f:
        f.write(b'{"n": 2')  # the station died in the middle of this line
    again = Outbox(tmp_path)
    assert [event for _, event in again.peek(0, 10)] == [{"n": 1}]
    again.append({"n": 3})
    assert [event for _, event in again.peek(0, 10)] == [{"n": 1}, {"n": 3}]


def test_json_lines_publisher_appends_one_line_per_event_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    publisher = JsonLinesPublisher(path).start()
    for n in range(3):
        publisher.publish({"item_id": f"s-{n}", "class": "glass"})
    publisher.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"item_id": f"s-{n}", "class": "glass"} for n in range(3)]
    assert publisher.published == 3
    with pytest.raises(RuntimeError, match="after close"):
        publisher.publish({"late": True})


def test_no_broker_means_json_lines_in_the_data_folder_or_stdout(tmp_path: Path, capsys) -> None:
    publisher = open_publisher("", "", "s1", tmp_path)
    assert isinstance(publisher, JsonLinesPublisher) and publisher.path == tmp_path / "events.jsonl"
    publisher.close()
    stdout = open_publisher("", "-", "s1", tmp_path)
    stdout.publish({"a": 1})
    stdout.close()
    assert json.loads(capsys.readouterr().out) == {"a": 1}


def test_beside_a_shared_database_each_station_has_its_own_events_file_and_outbox(tmp_path: Path) -> None:
    first, second = (open_publisher("", "", name, tmp_path, shared=True) for name in ("line 1", "line-2"))
    try:
        first.publish({"n": 1})
        second.publish({"n": 2})
    finally:
        first.close()
        second.close()
    assert isinstance(first, JsonLinesPublisher) and isinstance(second, JsonLinesPublisher)
    assert first.path == tmp_path / "events" / "line_1.jsonl" and second.path == tmp_path / "events" / "line-2.jsonl"
    assert json.loads(first.path.read_text()) == {"n": 1} and json.loads(second.path.read_text()) == {"n": 2}
    outboxes = {event_paths(name, tmp_path, shared=True)[0] for name in ("line 1", "line-2")}
    assert len(outboxes) == 2 and all(folder.parent == tmp_path / "events" for folder in outboxes)
    assert event_paths("line 1", tmp_path, shared=False) == (tmp_path / "events", tmp_path / "events.jsonl")


def test_topics_and_urls() -> None:
    assert decision_topic("line-2") == "sorting/line-2/decision"
    assert status_topic("line-2") == "sorting/line-2/status"
    with pytest.raises(ValueError, match="cannot be part of an MQTT topic"):
        decision_topic("hall/line+2")
    assert parse_mqtt_url("mqtt://10.0.0.5") == {
        "host": "10.0.0.5", "port": 1883, "tls": False, "username": None, "password": None}
    assert parse_mqtt_url("mqtts://sorter:p%40ss@broker.local:8884")["password"] == "p@ss"
    for bad in ("http://x", "mqtt://", "broker:1883", "mqtt://host:99999"):
        with pytest.raises(ValueError, match="mqtt_url"):
            parse_mqtt_url(bad)
