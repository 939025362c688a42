"""Provisioning a device: identity, keys and the bundle it boots with.

Per device: a random pseudonymous id (16 hex digits), a P-256 key and a
client certificate from the fleet CA (CN = the id), and an AES-256 payload
key with its key id and COSE base IV, registered (wrapped) in the server's
key vault. The device bundle is a directory laid out like the device's
filesystem state:

    settings.json                broker host and port, batch period
    certs/ca.der                 the fleet CA, pinned
    certs/device.der             the client certificate
    certs/device.key.der         its private key (0600)
    certs/update-trust.json      the board class and the update-signing keys it trusts

The payload key goes into the device's NVS, never into a bundle file: on
the sim board by running the keystore's own provision() on the unix port.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from host_tools.images import TRUST_FILE, trust_document
from host_tools.paths import ToolError, micropython
from host_tools.payloads import DeviceKey
from host_tools.pki import der, write_private
from host_tools.server import Server, private_dir

NVS_PROVISION = """
import sys, board
from binascii import unhexlify
from wearsafe import keystore
device_id, key, kid, iv = sys.stdin.read().split()
store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
store.provision(device_id, unhexlify(key), unhexlify(kid), unhexlify(iv))
"""


@dataclass(frozen=True)
class Device:
    device_id: str
    state: Path  # its bundle / simulated filesystem state


def sim_env(fs: Path, state: Path, **extra: str) -> dict[str, str]:
    """Environment of a simulated device running the build in `fs` on state `state`."""
    env = dict(os.environ, MICROPYPATH=f"{fs / 'lib'}{os.pathsep}.frozen",
               WEARSAFE_SIM_DIR=str(state))
    env.update(extra)
    return env


def write_bundle(server: Server, device_id: str, state: Path, settings: dict[str, object],
                 board: str = "sim") -> None:
    certs = private_dir(state / "certs")
    key_path, cert_path = server.ca.issue(device_id)
    (certs / "ca.der").write_bytes(der(server.ca.cert_path))
    (certs / "device.der").write_bytes(der(cert_path))
    write_private(certs / "device.key.der", der(key_path))
    key_path.unlink()  # a device's private key lives on the device only
    (state / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    if server.update_keys():
        (state / TRUST_FILE).write_text(trust_document(board, server.update_keys()))


def provision_sim_device(server: Server, fs: Path, state: Path, broker_port: int,
                         batch_seconds: int = 60, broker_host: str = "localhost") -> Device:
    """A simulated device in `state`: bundle written, NVS provisioned, key registered."""
    if (state / "certs").exists():
        raise ToolError(f"{state} already holds a provisioned device")
    private_dir(state)
    device_id = secrets.token_hex(8)
    key = DeviceKey(secrets.token_bytes(4), secrets.token_bytes(32), secrets.token_bytes(13))
    write_bundle(server, device_id, state, {"batch_seconds": batch_seconds,
                                            "broker_host": broker_host,
                                            "broker_port": broker_port})
    secret_input = " ".join([device_id, key.key.hex(), key.key_id.hex(), key.base_iv.hex()])
    done = subprocess.run([micropython(), "-c", NVS_PROVISION], input=secret_input, text=True,
                          cwd=state, env=sim_env(fs, state), capture_output=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"provisioning the NVS of the simulated device in {state} failed:\n"
                        f"{done.stderr}")
    server.register(device_id, key)
    return Device(device_id, state)
