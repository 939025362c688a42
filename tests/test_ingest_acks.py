"""The ingest's PUBACKs, written many to one write (host_tools/fleet/mqtt.acknowledge),
against a real Mosquitto: what is acknowledged is never sent again, what is not
comes back, and the bytes are the ones paho's own ack() sends one at a time."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from host_tools.fleet.broker import INFLIGHT_WINDOW, Broker, ingest_identity
from host_tools.fleet.mqtt import acknowledge, tls_client
from host_tools.fleet.server import Server

DEVICE = "b3e7c0ffee0000aa"
QUEUED = INFLIGHT_WINDOW + 17  # more than the broker sends ahead of PUBACKs


@pytest.fixture
def queued(tmp_path):  # type: ignore[no-untyped-def]
    """A broker holding QUEUED messages (QoS 1) in a consumer's persistent session."""
    server = Server(tmp_path / "server").init()
    server.ca.issue(DEVICE)
    with Broker(tmp_path / "broker", server.ca) as broker:
        consumer = _session(server, broker.port, [])
        consumer.disconnect()
        consumer.loop_stop()
        device = tls_client(server, DEVICE)
        device.connect("localhost", broker.port)
        device.loop_start()
        for info in [device.publish(f"devices/{DEVICE}/up", b"%d" % n, qos=1)
                     for n in range(QUEUED)]:
            info.wait_for_publish(10)
        device.disconnect()
        device.loop_stop()
        yield server, broker.port


def _session(server: Server, port: int, inbox: list[mqtt.MQTTMessage]) -> mqtt.Client:
    client = tls_client(server, server.identity(ingest_identity(8)), clean_session=False,
                        manual_ack=True)
    subscribed = threading.Event()
    client.on_message = lambda c, u, m: inbox.append(m)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"devices/{DEVICE}/up", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("localhost", port)
    client.loop_start()
    assert subscribed.wait(10), "the broker did not take the subscription"
    return client


def _drain(inbox: list[mqtt.MQTTMessage], n: int, quiet_s: float = 1.0) -> None:
    """Until n messages have come, then until none has come for quiet_s."""
    deadline = time.monotonic() + 20
    while len(inbox) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = -1
    while seen != len(inbox):
        seen = len(inbox)
        time.sleep(quiet_s)


def test_what_is_acknowledged_in_one_write_is_not_sent_again(queued):  # type: ignore[no-untyped-def]
    server, port = queued
    inbox: list[mqtt.MQTTMessage] = []
    client = _session(server, port, inbox)
    acked = 0
    deadline = time.monotonic() + 20
    while acked < QUEUED and time.monotonic() < deadline:  # batches as the ingest takes them
        batch = inbox[acked:acked + INFLIGHT_WINDOW // 2]
        if batch:
            acknowledge(client, batch)
            acked += len(batch)
        time.sleep(0.01)
    assert acked == QUEUED and [m.payload for m in inbox] == [b"%d" % n for n in range(QUEUED)]
    time.sleep(0.5)  # the PUBACKs reach the broker before the session goes
    client.disconnect()
    client.loop_stop()

    again: list[mqtt.MQTTMessage] = []
    client = _session(server, port, again)
    _drain(again, 0)
    client.disconnect()
    client.loop_stop()
    assert again == [], f"{len(again)} acknowledged messages were sent again"


def test_what_is_not_acknowledged_comes_again(queued):  # type: ignore[no-untyped-def]
    server, port = queued
    inbox: list[mqtt.MQTTMessage] = []
    client = _session(server, port, inbox)
    _drain(inbox, INFLIGHT_WINDOW)
    assert len(inbox) == INFLIGHT_WINDOW  # the broker's window, and no more without PUBACKs
    acknowledge(client, inbox[:10])
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()

    again: list[mqtt.MQTTMessage] = []
    client = _session(server, port, again)
    _drain(again, QUEUED - 10)
    acknowledge(client, again)
    client.disconnect()
    client.loop_stop()
    assert [m.payload for m in again] == [b"%d" % n for n in range(10, QUEUED)]


def test_the_bytes_are_pahos_own(monkeypatch):  # type: ignore[no-untyped-def]
    """Paho's ack() for each message, one packet each, concatenated: the same bytes."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, manual_ack=True)
    written: list[bytes] = []
    monkeypatch.setattr(client, "_packet_queue",
                        lambda command, packet, mid, qos, info=None: written.append(packet))
    messages = []
    for mid, qos in [(1, 1), (2, 0), (65535, 1), (300, 1)]:
        m = mqtt.MQTTMessage(mid)
        m.qos = qos
        messages.append(m)
    for m in messages:
        client.ack(m.mid, m.qos)
    one_by_one = b"".join(written)
    written.clear()
    acknowledge(client, messages)
    assert written == [one_by_one] and len(one_by_one) == 3 * 4
