"""Provisioning a device: identity, keys and the bundle it boots with.

Per device: a random pseudonymous id (16 hex digits), a P-256 key and a
client certificate from the fleet CA (CN = the id), and an AES-256 payload
key with its key id and COSE base IV, registered (wrapped) in the server's
key vault. The device bundle is a directory (0700) laid out like the
device's filesystem state:

    device-id                    the pseudonym (public: it is in the topic)
    settings.json                broker host and port, batch period
    certs/ca.der                 the fleet CA, pinned (it signs the broker's certificate)
    certs/device.der             the client certificate
    certs/device.key.der         its private key (0600)
    certs/update-trust.json      the board class and the update-signing keys it trusts

The payload key goes into the device's NVS, never into a file on the
device: on the sim board by running the keystore's own provision() on the
unix port into the bundle (which is the simulated device's state); for a
hardware board it waits in factory/payload-key.json (0600) until
`wearsafe flash` writes it into the board's NVS and deletes it.

A bundle is written into a staging directory and renamed into place only
when complete, and the key is registered only then: a failure leaves
neither a half-written bundle nor a registered key without its device.

The device checks the broker's host name against the broker's certificate,
so a device is provisioned only with a broker_host that certificate names:
provisioning never changes the certificate of a broker that may be running
(`wearsafe broker-config --broker-name` does, and the operator reloads the
broker). Only when there is no broker certificate yet is it issued, naming
the device's broker_host.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from host_tools.fleet.broker import reload_broker
from host_tools.fleet.payloads import DeviceKey
from host_tools.fleet.pki import der, host_name, private_dir, write_private
from host_tools.fleet.server import Server
from host_tools.paths import ToolError, check_board, micropython
from host_tools.updates.images import TRUST_FILE, trust_document

FACTORY_KEY = "factory/payload-key.json"
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
    broker: str = ""  # what was done so that the broker lets it read its updates


def sim_env(fs: Path, state: Path, **extra: str) -> dict[str, str]:
    """Environment of a simulated device running the build in `fs` on state `state`."""
    env = dict(os.environ, MICROPYPATH=f"{fs / 'lib'}{os.pathsep}.frozen",
               WEARSAFE_SIM_DIR=str(state))
    env.update(extra)
    return env


def private_files() -> None:
    """preexec_fn of a simulated device: what it writes (NVS with its keys, outbox)
    is its owner's only, as the device's flash is."""
    os.umask(0o077)


def nvs_secret(device_id: str, key: DeviceKey) -> str:
    """What NVS_PROVISION reads on its standard input."""
    return " ".join([device_id, key.key.hex(), key.key_id.hex(), key.base_iv.hex()])


def provisioned_id(bundle: Path) -> str | None:
    path = bundle / "device-id"
    return path.read_text().strip() if path.is_file() else None


def provision(server: Server, board: str, bundle: Path, settings: dict[str, object], *,
              force: bool = False, sim_fs: Path | None = None,
              simulated: bool = False) -> Device:
    """A new device: its bundle written whole into `bundle`, its key registered.
    `simulated`: it runs in the simulator, which alone may use a simulator's server."""
    check_board(board)
    if server.is_simulator and not simulated:
        raise ToolError(f"{server.directory} is a simulator's server directory (`wearsafe "
                        "sim` made it): devices provisioned from it would trust its throwaway "
                        "update key. Give the fleet's own --server")
    old_id = provisioned_id(bundle)
    if old_id and not force:
        raise ToolError(f"{bundle} already holds device {old_id}: give --force to replace "
                        "its identity and keys (the old ones stay registered until "
                        "`wearsafe forget`)")
    if bundle.exists() and not old_id and any(bundle.iterdir()):
        raise ToolError(f"{bundle} is not empty and holds no device bundle: choose an empty "
                        "or new directory")
    if board == "sim" and sim_fs is None:
        raise ToolError("a sim device needs the sim build: run `wearsafe build --board sim`")
    try:
        bundle.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ToolError(f"cannot write the bundle: {bundle.parent} is a file, not a "
                        "directory") from None
    except OSError as e:
        raise ToolError(f"cannot create {bundle.parent}: {e.strerror}") from e
    if isinstance(settings.get("broker_host"), str):
        settings = dict(settings, broker_host=certified_broker_host(
            server, str(settings["broker_host"])))
    staging = bundle.with_name(f".{bundle.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    device_id = secrets.token_hex(8)
    key = DeviceKey(secrets.token_bytes(4), secrets.token_bytes(32), secrets.token_bytes(13))
    try:
        _write_bundle(server, board, device_id, private_dir(staging), settings)
        if board == "sim":
            assert sim_fs is not None
            _provision_sim_nvs(sim_fs, staging, device_id, key)
        else:
            factory = private_dir(staging / "factory")
            write_private(factory / "payload-key.json", json.dumps(
                {"device_id": device_id, "key": key.key.hex(), "key_id": key.key_id.hex(),
                 "base_iv": key.base_iv.hex()}).encode())
        server.register(device_id, key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, bundle)
    return Device(device_id, bundle, reload_broker(server.ca, server.broker_dir))


def certified_broker_host(server: Server, host: str, issue: bool = True) -> str:
    """`host` (normalised: host_name) once the broker's certificate names it; that
    certificate is issued naming it if there is none yet (and `issue`). ToolError,
    saying what to run, when the certificate does not name it: the device would
    refuse the broker."""
    name = host_name(host)
    ca = server.ca
    certified = ca.certified_broker_names()
    if certified is None and not ca.broker_cert_path.exists():
        if issue:
            ca.ensure_broker_certificate([name])  # first use: no broker presents one yet
        return name
    if certified is None:
        raise ToolError(f"the broker's certificate {ca.broker_cert_path} is unreadable: "
                        f"re-issue it with `wearsafe broker-config --server {server.directory} "
                        f"--out DIR --broker-name {name}` and reload the broker")
    if name not in certified:
        raise ToolError(
            f"the broker's certificate ({ca.broker_cert_path}) names {', '.join(certified)} "
            f"but does not name {name!r}: a device given it as broker_host would refuse the "
            "broker (it checks the broker's host name). Give --broker one of those "
            f"names, or add it: `wearsafe broker-config --server {server.directory} --out "
            f"DIR --broker-name {name}` (DIR: where your broker's configuration is; the "
            "names already certified stay), reload the broker (send it SIGHUP, or restart "
            "it), then provision again")
    return name


def _write_bundle(server: Server, board: str, device_id: str, state: Path,
                  settings: dict[str, object]) -> None:
    certs = private_dir(state / "certs")
    key_path, cert_path = server.ca.issue(device_id, board_class=board)
    try:
        (certs / "ca.der").write_bytes(der(server.ca.cert_path))
        (certs / "device.der").write_bytes(der(cert_path))
        write_private(certs / "device.key.der", der(key_path))
    finally:
        key_path.unlink()  # a device's private key lives on the device only
    (state / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    if server.update_keys():
        (state / TRUST_FILE).write_text(trust_document(board, server.update_keys()))
    (state / "device-id").write_text(device_id + "\n")


def _provision_sim_nvs(fs: Path, state: Path, device_id: str, key: DeviceKey) -> None:
    done = subprocess.run([micropython(), "-c", NVS_PROVISION], input=nvs_secret(device_id, key),
                          text=True, cwd=state, env=sim_env(fs, state), capture_output=True,
                          check=False, preexec_fn=private_files)
    if done.returncode != 0:
        raise ToolError(f"provisioning the NVS of the simulated device failed:\n{done.stderr}")


def _swap_in(staging: Path, bundle: Path) -> None:
    """Replace `bundle` by `staging` with renames only."""
    old = bundle.with_name(f".{bundle.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if bundle.exists():
        os.replace(bundle, old)
    os.replace(staging, bundle)
    shutil.rmtree(old, ignore_errors=True)


def provision_sim_device(server: Server, fs: Path, state: Path, broker_port: int,
                         batch_seconds: int = 60, broker_host: str = "localhost",
                         upload_interval_s: int = 0) -> Device:
    """A simulated device in `state`: bundle written, NVS provisioned, key registered.
    It is always connected unless given an upload interval."""
    return provision(server, "sim", state, {"batch_seconds": batch_seconds,
                                            "broker_host": broker_host,
                                            "broker_port": broker_port,
                                            "upload_interval_s": upload_interval_s}, sim_fs=fs,
                     simulated=True)
