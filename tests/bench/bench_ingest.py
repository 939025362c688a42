"""Ingest throughput next to the raw broker throughput, for the same messages, in one run.

N sealed messages are published QoS 1 through a real Mosquitto with TLS by a
device identity. First the ingest takes them (open, check, store in SQLite,
then PUBACK); then a plain paho subscriber takes the very same messages.
Both figures are messages per second from the first publish to the last
message handled; their ratio is the ingest's cost over the broker's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.fleet.broker import (
    Broker,  # noqa: E402
    ingest_identity,  # noqa: E402
)
from host_tools.fleet.ingest import Ingest
from host_tools.fleet.mqtt import tls_client  # noqa: E402
from host_tools.fleet.payloads import DeviceKey, enc_structure, external_aad, nonce  # noqa: E402
from host_tools.fleet.server import Server  # noqa: E402

N = 2000
DEVICE = "b3e7c0ffee000001"
TOPIC = f"devices/{DEVICE}/up"
PROTECTED = cbor2.dumps({1: 31})


def seal(key: DeviceKey, counter: int, payload: bytes) -> bytes:
    piv = counter.to_bytes(4, "big").lstrip(b"\0") or b"\0"
    ct = AESCCM(key.key, tag_length=16).encrypt(
        nonce(key.base_iv, piv), payload, enc_structure(PROTECTED, external_aad(DEVICE, TOPIC)))
    return cbor2.dumps(cbor2.CBORTag(16, [PROTECTED, {4: key.key_id, 6: piv}, ct]))


def publish_all(server: Server, port: int, messages: list[bytes]) -> float:
    client = tls_client(server, DEVICE)
    client.max_inflight_messages_set(20)
    client.connect("localhost", port)
    client.loop_start()
    start = time.perf_counter()
    infos = [client.publish(TOPIC, m, qos=1) for m in messages]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    return start


def until(count: int, counter: list[int] | Ingest, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while (counter.stored if isinstance(counter, Ingest) else counter[0]) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {counter if isinstance(counter, list) else counter.stored}"
                             f" of {count} messages arrived")
        time.sleep(0.001)
    return time.perf_counter()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "server").init()
        server.ca.issue(DEVICE)
        key = DeviceKey(b"bk01", os.urandom(32), os.urandom(13))
        server.register(DEVICE, key)
        payload = os.urandom(150)  # about a minute of vitals
        messages = [seal(key, i, payload) for i in range(N)]
        with Broker(Path(tmp) / "broker", server.ca) as broker, open(os.devnull, "w") as quiet:
            ingest = Ingest(server, log=quiet)
            stop, ready = threading.Event(), threading.Event()
            threading.Thread(target=ingest.run, args=(broker.port,),
                             kwargs={"stop": stop, "ready": ready}, daemon=True).start()
            ready.wait(10)
            start = publish_all(server, broker.port, messages)
            ingest_rate = N / (until(N, ingest) - start)
            stop.set()
            time.sleep(0.5)

            got = [0]
            raw = tls_client(server, server.identity(ingest_identity(2)))
            raw.on_message = lambda c, u, m: got.__setitem__(0, got[0] + 1)
            raw.connect("localhost", broker.port)
            raw.subscribe("devices/+/up", qos=1)
            raw.loop_start()
            time.sleep(0.5)
            start = publish_all(server, broker.port, messages)
            raw_rate = N / (until(N, got) - start)
            raw.loop_stop()
    print(f"ingest: {ingest_rate:.0f} messages/s opened and stored ({N} messages of "
          f"{len(messages[0])} bytes, SQLite)")
    print(f"raw broker (plain subscriber, same messages): {raw_rate:.0f} messages/s")
    print(f"ingest / raw broker throughput: {ingest_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
