"""Hardware in the loop: the target suite on a board, then the board end to end.

The end-to-end check: the board, flashed with the application and its
bundle (`wearsafe flash`), runs the application against the broker given
on the command line; the host listens on the device's topic with the
server's ingest identity, and opens what arrives with the device's key.
It prints counts and verdicts, never a reading.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.device.provision import certified_broker_host
from host_tools.fleet.broker import HIL_ID, UP_TOPIC, parse_address
from host_tools.fleet.mqtt import start_client, tls_client
from host_tools.fleet.payloads import DeviceKey, PayloadError, PayloadOpener
from host_tools.fleet.server import Server, open_server
from host_tools.paths import TARGET_TESTS, ToolError
from host_tools.testing.target import BOARD_HOME, BoardTarget

E2E_BATCH_SECONDS = 2


def run_suite(port: str, board: str, select: str | None) -> int:
    """The target suite through mpremote. It works in :wstest/ on the board and removes
    it at its end (host_tools.testing.target.BoardTarget); should pytest die first, it goes here."""
    extra = ["-k", select] if select else []
    try:
        return subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                str(TARGET_TESTS), f"--target={port}",
                                f"--target-board={board}", *extra])
    finally:
        try:
            BoardTarget(port, board, Path(".")).remove_home()
        except ToolError as e:
            print(f"hil: could not check the board for :{BOARD_HOME}/: {e}")


def certified_broker(broker: str, server: Server) -> tuple[str, int]:
    """HOST:PORT, once the broker's certificate names HOST: the board checks the
    broker's host name, so a name the certificate lacks is said here, not by a
    handshake failing on the board."""
    host, port = parse_address(broker)
    return certified_broker_host(server, host, issue=False), port


def board_end_to_end(port: str, board: str, broker: str, server_dir: Path,
                     seconds: int = 10) -> int:
    """0 when a message the board published arrived and opened under its key."""
    server = open_server(server_dir)
    host, broker_port = certified_broker(broker, server)
    target = BoardTarget(port, board, Path("."))
    device_id = target.mpremote("fs", "cat", ":device-id").strip().splitlines()[-1]
    key = server.device_key(device_id)
    with tempfile.TemporaryDirectory() as tmp:
        # the board's own settings.json, byte for byte: it goes back as it was
        original = Path(tmp) / "settings.json"
        target.mpremote("fs", "cp", ":settings.json", str(original))
        return _end_to_end(target, server, device_id, key, host, broker_port, original,
                           seconds)


def _end_to_end(target: BoardTarget, server: Server, device_id: str, key: DeviceKey,
                host: str, broker_port: int, original: Path, seconds: int) -> int:
    settings = json.loads(original.read_text())
    arrived: queue.Queue[bytes] = queue.Queue()
    client = tls_client(server, server.identity(HIL_ID))
    client.on_message = lambda c, u, m: arrived.put(bytes(m.payload))
    topic = UP_TOPIC.format(device_id)
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    start_client(client, host, broker_port, "hil")
    try:
        _put_settings(target, dict(settings, broker_host=host, broker_port=broker_port,
                                   batch_seconds=E2E_BATCH_SECONDS))
        try:
            # from a soft reset, as the board starts the app: a fresh heap, boot.py run
            log = target.mpremote("exec", f"import wearsafe.app; wearsafe.app.run({seconds})",
                                  timeout=seconds + 120, reset=True)
        finally:
            # from a soft reset too: an application that failed (a MemoryError) left its
            # heap full, and the board's settings must go back even then
            target.mpremote("fs", "cp", str(original), ":settings.json", reset=True)
        return _judge(arrived, PayloadOpener({key.key_id: key}, in_order=False), device_id,
                      topic, log)
    finally:
        client.disconnect()
        client.loop_stop()


def _put_settings(target: BoardTarget, settings: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.json"
        path.write_text(json.dumps(settings, indent=1) + "\n")
        target.mpremote("fs", "cp", str(path), ":settings.json")


def _judge(arrived: queue.Queue[bytes], opener: PayloadOpener, device_id: str, topic: str,
           log: str) -> int:
    messages, records = 0, 0
    try:
        while True:
            sealed = arrived.get(timeout=10 if not messages else 2)
            try:
                records += len(opener.open_senml(sealed, device_id, topic))
            except PayloadError as e:
                print(f"board end-to-end: FAILED: a message did not open: {e}")
                return 1
            messages += 1
    except queue.Empty:
        pass
    if not messages:
        tail = "\n".join(log.strip().splitlines()[-10:])
        print(f"board end-to-end: FAILED: nothing from device {device_id} arrived; the "
              f"board's log ends:\n{tail}")
        return 1
    print(f"board end-to-end: device {device_id} published {messages} sealed messages over "
          f"TLS; all opened under its key ({records} SenML records)")
    return 0
