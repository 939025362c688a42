"""Ingest throughput next to the raw broker throughput, for the same messages, in one run.

N sealed messages are published QoS 1 through a real Mosquitto with TLS by a
device identity. A plain paho subscriber takes them first; then the ingest
does (open, check, store, then PUBACK) with 1, 2 and 4 worker processes'
identities on one shared subscription, storing in SQLite and then in a real
PostgreSQL (started here). Each figure is messages per second from the first
publish to the last message handled; each ratio is to the plain subscriber.
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


WORKERS = (1, 2, 4)


def plain_rate(server: Server, tmp: Path, messages: list[bytes]) -> float:
    got = [0]
    with Broker(tmp / "broker-plain", server.ca) as broker:
        raw = tls_client(server, server.identity(ingest_identity(8)))
        raw.on_message = lambda c, u, m: got.__setitem__(0, got[0] + 1)
        raw.connect("localhost", broker.port)
        raw.subscribe("devices/+/up", qos=1)
        raw.loop_start()
        time.sleep(0.5)
        start = publish_all(server, broker.port, messages)
        rate = N / (until(N, got) - start)
        raw.loop_stop()
    return rate


def ingest_rate(server: Server, broker_dir: Path, messages: list[bytes], workers: int) -> float:
    """Messages/s through `workers` ingests (a fresh broker: no sessions of a round before)."""
    with Broker(broker_dir, server.ca) as broker, open(os.devnull, "w") as quiet:
        stop = threading.Event()
        ingests = [Ingest(server, log=quiet) for _ in range(workers)]
        for process, ingest in enumerate(ingests, start=1):
            ready = threading.Event()
            threading.Thread(target=ingest.run, args=(broker.port, "localhost", process),
                             kwargs={"stop": stop, "ready": ready, "shared": workers > 1},
                             daemon=True).start()
            ready.wait(10)
        total = Total(ingests)
        start = publish_all(server, broker.port, messages)
        rate = N / (until(N, total) - start)
        stop.set()
        time.sleep(0.5)
    return rate


class Total(list):  # type: ignore[type-arg]
    """The workers' stored messages, as until() counts them."""

    def __init__(self, ingests: list[Ingest]) -> None:
        super().__init__([0])
        self.ingests = ingests

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return sum(ingest.stored for ingest in self.ingests)


def main() -> None:
    from host_tools.testing.postgres import PostgresServer

    postgres = PostgresServer().start()
    results: dict[tuple[str, int], float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = DeviceKey(b"bk01", os.urandom(32), os.urandom(13))
            payload = os.urandom(150)  # about a minute of vitals
            servers = {"SQLite": Server(Path(tmp) / "sqlite").init(),
                       "PostgreSQL": Server(Path(tmp) / "pg").init(postgres.new_database())}
            for server in servers.values():
                server.ca.issue(DEVICE)
                server.register(DEVICE, key)
            first = servers["SQLite"]
            raw = plain_rate(first, Path(tmp), [seal(key, i, payload) for i in range(N)])
            counter = N
            for engine, server in servers.items():
                for workers in WORKERS:
                    messages = [seal(key, counter + i, payload) for i in range(N)]
                    counter += N
                    results[engine, workers] = ingest_rate(
                        server, Path(tmp) / f"broker-{engine}-{workers}", messages, workers)
    finally:
        postgres.stop()
    print(f"raw broker (plain subscriber): {raw:.0f} messages/s ({N} messages of "
          f"{len(messages[0])} bytes, QoS 1, TLS)")
    for (engine, workers), rate in results.items():
        print(f"ingest, {engine}, {workers} worker{'s' if workers > 1 else ''}: {rate:.0f} "
              f"messages/s = {rate / raw:.2f} of the plain subscriber")


if __name__ == "__main__":
    main()
