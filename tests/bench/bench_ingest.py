"""Ingest throughput next to a plain subscriber's, for the same backlog, in one run.

Each round: a fresh server directory (SQLite, or a database of a real PostgreSQL
started here), a fresh Mosquitto with TLS, and N sealed messages of 16 devices
queued QoS 1 in the consumers' persistent sessions while they are away. Then
the consumers come and drain it: a plain paho subscriber (acknowledges each
message as it arrives, stores nothing), or 1, 2 and 4 `wearsafe ingest` worker
processes (open, check, store in batches, then PUBACK), partitioned
(--processes: each reads every message, stores its share) and shared
(--shared: the broker hands each message to one). A figure is messages per
second from the first message handled to the last (the ingest's by the
store's received_ms): the consumer's own speed, not a publisher's nor a
process's start-up; each ratio is to the plain subscriber. One worker against
a plain subscriber, the figure issue 17 asks for, is measured in REPEATS rounds,
each with a plain run of its own, and the median is printed with the spread.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.fleet.broker import Broker, ingest_identity  # noqa: E402
from host_tools.fleet.mqtt import tls_client  # noqa: E402
from host_tools.fleet.payloads import DeviceKey, enc_structure, external_aad, nonce  # noqa: E402
from host_tools.fleet.server import Server  # noqa: E402
from host_tools.processes import stop_group  # noqa: E402

N = 24000
DEVICES = [f"b3e7c0ffee0000{i:02x}" for i in range(16)]
PROTECTED = cbor2.dumps({1: 31})
WORKERS = (1, 2, 4)
REPEATS = 3
WEARSAFE = Path(sys.executable).with_name("wearsafe")


def seal(key: DeviceKey, device: str, counter: int, payload: bytes) -> bytes:
    piv = counter.to_bytes(4, "big").lstrip(b"\0") or b"\0"
    aad = enc_structure(PROTECTED, external_aad(device, f"devices/{device}/up"))
    ct = AESCCM(key.key, tag_length=16).encrypt(nonce(key.base_iv, piv), payload, aad)
    return cbor2.dumps(cbor2.CBORTag(16, [PROTECTED, {4: key.key_id, 6: piv}, ct]))


def fleet(directory: Path, db: str | None) -> tuple[Server, dict[str, list[bytes]]]:
    """A server with 16 registered devices, and N messages (payloads of about a
    minute of vitals) split among them."""
    server = Server(directory).init(db)
    messages = {}
    for i, device in enumerate(DEVICES):
        key = DeviceKey(bytes([0xB0, i]), os.urandom(32), os.urandom(13))
        server.ca.issue(device)
        server.register(device, key)
        messages[device] = [seal(key, device, n, os.urandom(150))
                            for n in range(N // len(DEVICES))]
    return server, messages


def publish(server: Server, port: int, messages: dict[str, list[bytes]]) -> None:
    for device, sealed in messages.items():
        client = tls_client(server, device)
        client.max_inflight_messages_set(20)
        client.connect("localhost", port)
        client.loop_start()
        for info in [client.publish(f"devices/{device}/up", m, qos=1) for m in sealed]:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()


def cpu_s(*pids: int) -> float:
    """User and system CPU seconds these processes have used."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Round:
    """A drain's figures: messages/s and the broker's CPU per second of it."""

    def __init__(self, drain_s: float, broker_cpu: float) -> None:
        self.rate = (N - 1) / drain_s
        self.broker_load = broker_cpu / drain_s

    def text(self, plain: Round) -> str:
        return (f"{self.rate:.0f} messages/s = {self.rate / plain.rate:.2f} of the plain "
                f"subscriber (broker CPU {self.broker_load:.2f} s/s)")


def plain_rate(tmp: Path) -> Round:
    server, messages = fleet(tmp / "plain", None)
    times: list[float] = []
    with Broker(tmp / "plain-broker", server.ca) as broker:
        def session() -> object:
            c = tls_client(server, server.identity(ingest_identity(8)), clean_session=False)
            c.on_message = lambda c, u, m: times.append(time.time())
            c.on_connect = lambda c, u, f, rc, p: c.subscribe("devices/+/up", qos=1)
            c.connect("localhost", broker.port)
            c.loop_start()
            return c
        first = session()
        time.sleep(1)
        first.disconnect()  # type: ignore[attr-defined]
        first.loop_stop()  # type: ignore[attr-defined]
        publish(server, broker.port, messages)
        times.clear()
        assert broker.process
        broker_cpu = cpu_s(broker.process.pid)
        second = session()
        wait(lambda: len(times), N)
        broker_cpu = cpu_s(broker.process.pid) - broker_cpu
        second.disconnect()  # type: ignore[attr-defined]
        second.loop_stop()  # type: ignore[attr-defined]
    return Round(max(times) - min(times), broker_cpu)


def wait(count: object, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while (got := count()) < n:  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {got} of {n} messages arrived")
        time.sleep(0.05)


def workers(server: Server, port: int, n: int, mode: str,
            log: Path) -> list[subprocess.Popen[bytes]]:
    """n `wearsafe ingest` processes started together, each subscribed when this returns."""
    split = ["--processes", str(n)] if mode == "partitioned" else ["--shared"]
    procs, logs = [], [log.with_suffix(f".{k}.log") for k in range(1, n + 1)]
    for k, out in enumerate(logs, start=1):
        procs.append(subprocess.Popen(
            [str(WEARSAFE), "ingest", "--server", str(server.directory), "--broker",
             f"localhost:{port}", "--process", str(k), *split],
            stdout=out.open("ab"), stderr=subprocess.STDOUT, start_new_session=True))
    for out in logs:
        try:
            wait(lambda out=out: out.read_text().count("subscribed"), 1, timeout=30)
        except SystemExit:
            log = out.read_text()
            raise SystemExit(f"bench: an ingest worker did not subscribe: {log}") from None
    return procs


def ingest_rate(tmp: Path, engine: str, db: str | None, n: int, mode: str) -> Round:
    name = f"{engine}-{n}-{mode}"
    server, messages = fleet(tmp / name, db)
    with Broker(tmp / f"{name}-broker", server.ca) as broker:
        for proc in workers(server, broker.port, n, mode, tmp / f"{name}-first"):
            stop_group(proc)  # their sessions stay, and the backlog queues there
        publish(server, broker.port, messages)
        assert broker.process
        broker_cpu = cpu_s(broker.process.pid)
        procs = workers(server, broker.port, n, mode, tmp / name)
        with server.messages_db() as store:
            wait(lambda: store.execute("SELECT count(*) FROM messages").fetchone()[0], N)
            first, last = store.execute("SELECT min(received_ms), max(received_ms) "
                                        "FROM messages").fetchone()
        figures = Round(max(last - first, 1) / 1000, cpu_s(broker.process.pid) - broker_cpu)
        for proc in procs:
            stop_group(proc)
    return figures


def main() -> None:
    from host_tools.testing.postgres import PostgresServer

    postgres = PostgresServer().start()
    ones: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}  # one worker, by round
    plains: list[Round] = []
    results: dict[tuple[str, int, str], Round] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            def measure(engine: str, n: int, mode: str, name: str) -> Round:
                db = postgres.new_database() if engine == "PostgreSQL" else None
                return ingest_rate(Path(tmp) / name, engine, db, n, mode)

            # The acceptance figure, one worker to a plain subscriber, in REPEATS
            # rounds each of its own plain run: this machine's noise is the spread.
            for r in range(REPEATS):
                (Path(tmp) / f"round{r}").mkdir()
                plains.append(plain_rate(Path(tmp) / f"round{r}"))
                for engine in ones:
                    one = measure(engine, 1, "partitioned", f"round{r}")
                    ones[engine].append(one.rate / plains[-1].rate)
            (Path(tmp) / "scale").mkdir()
            for engine in ones:
                for n in WORKERS[1:]:
                    for mode in ("partitioned", "shared"):
                        results[engine, n, mode] = measure(engine, n, mode, "scale")
    finally:
        postgres.stop()
    plain = sorted(plains, key=lambda p: p.rate)[len(plains) // 2]  # the median
    print(f"plain subscriber: {plain.text(plain)}, median of "
          + ", ".join(f"{p.rate:.0f}" for p in plains)
          + f" ({N} queued messages of 16 devices, QoS 1, TLS, {os.cpu_count()} cores)")
    for engine, ratios in ones.items():
        print(f"ingest, {engine}, 1 worker: {statistics.median(ratios):.2f} of the plain "
              f"subscriber (median; rounds " + ", ".join(f"{x:.2f}" for x in ratios) + ")")
    for (engine, n, mode), figures in results.items():
        print(f"ingest, {engine}, {n} {mode} workers: {figures.text(plain)}")


if __name__ == "__main__":
    main()
