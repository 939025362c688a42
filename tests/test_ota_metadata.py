"""Update metadata that cannot hurt (issue 13, findings 4 and 9), with images imgtool signs.

The device acts on the signed image only: its version must exceed the running
one (whatever the announcement claims), its kind must be the one announced, its
security counter must fit the device's NVS; a revoked key is refused even when
the trust file lists it. The device's own code without signed images:
tests/target/test_ota_announcements.py and test_ota_trust.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from host_tools.device.provision import sim_env
from host_tools.paths import FIRMWARE, ToolError, micropython
from host_tools.sim.fleet import RESET_EXIT, SIM_HEAP
from host_tools.updates import images
from tests.test_ota_image import device_state, run_cases

RUNNING = re.search(r'VERSION = "([^"]+)"',
                    (FIRMWARE / "lib/wearsafe/__init__.py").read_text()).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def signer(tmp_path_factory, sim_build):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("metadata")
    key = images.keygen(d / "key.pem")
    other = images.keygen(d / "other.pem")
    payload = d / "payload.tar"
    with tarfile.open(payload, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("demo/a.py")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"A = 1\n"))

    def sign(name: str, version: str, counter: int = 5, kind: str = "app",
             key_path: Path = key) -> bytes:
        # imgtool itself, not images.sign: that one refuses counters from 2**31 on
        images._imgtool("sign", "--header-size", "32", "--pad-header", "-S", "0x100000",
                        "-v", version, "--security-counter", str(counter), "-k", str(key_path),
                        "--vid", images.VENDOR, "--cid", "sim", "--custom-tlv", "0xa0",
                        f"0x{images.KINDS[kind]:02x}", str(payload), str(d / name))
        return (d / name).read_bytes()

    return d, key, other, sign


# An ESP32's GC heap once grown: these cases load Ed25519 mid-way, then install
# (tests/test_ota_image.py keeps the verifier alone within 96K).
HEAP = "110K"


def verdicts(tmp_path: Path, fs: Path, key: Path, cases: dict[str, bytes]) -> dict[str, str]:
    return run_cases(device_state(tmp_path, key), fs, cases, heap=HEAP)


def test_a_signed_counter_the_device_cannot_store_is_refused_before_anything_is_installed(
        signer, sim_build, tmp_path):  # type: ignore[no-untyped-def]
    d, key, _, sign = signer
    got = verdicts(tmp_path, sim_build, key, {
        "counter-2^31": sign("c31.img", "9.0.0", 2**31),
        "counter-2^32-1": sign("c32.img", "9.0.0", 2**32 - 1),
        "counter-2^31-1": sign("cmax.img", "9.0.0", 2**31 - 1),  # the largest it stores
    })
    assert got == {"counter-2^31": "BadCounter untouched", "counter-2^32-1": "BadCounter untouched",
                   "counter-2^31-1": "OK changed"}, got


def test_a_signed_version_not_above_the_running_one_is_refused_as_a_downgrade(
        signer, sim_build, tmp_path):  # type: ignore[no-untyped-def]
    d, key, _, sign = signer
    major, minor, rev = (int(p) for p in RUNNING.split("."))
    older = f"{major}.{minor}.{rev - 1}+99" if rev else f"{major}.{minor - 1}.9+99"
    got = verdicts(tmp_path, sim_build, key, {
        "same-version": sign("same.img", RUNNING),
        "older-version-newer-build": sign("older.img", older),
        "newer-build": sign("newer.img", RUNNING + "+1"),
    })
    assert got == {"same-version": "Downgrade untouched",
                   "older-version-newer-build": "Downgrade untouched",
                   "newer-build": "OK changed"}, got


UPDATER = """
import board, json, sys
from wearsafe import VERSION
from wearsafe.ota import image, install, updater

class Link:
    def __init__(self):
        self.image = None
        self.listening = {}
    def listen(self, topic, callback):
        self.listening[topic] = callback
    def fetch(self, topic):
        self.image.seek(int(topic.rsplit("/", 1)[1]) * 4096)
        return self.image.read(4096)
    def close(self):
        pass

state = board.state_dir()
inst = install.Installer(board, install.load_trust(state + "/certs/update-trust.json"),
                         install.Counters(board.nvs("ota")))
link = Link()
up = updater.Updater(link, inst, board, {image.KIND_APP: VERSION, image.KIND_FIRMWARE: "0.0.0"})
for line in open(CASES):
    name, path, kind, version, digest = line.split()
    link.image = open(path, "rb")
    inst.record.data.pop("backoff", None)  # each case on its own: no pause carried over
    link.listening["updates/sim/announce"]("updates/sim/announce", json.dumps(
        {"version": version, "kind": kind, "size": link.image.seek(0, 2), "chunk": 4096,
         "digest": digest}))
    try:
        for _ in range(20):
            up.service(board.ticks_add(board.ticks_ms(), 1000))
    except SystemExit:
        print(name, "installed", "-")
        break
    event, info = up.reports.pop() if up.reports else ("none", {})
    print(name, event, info.get("version"), info.get("reason"),
          "listed" if inst.refused_before(digest) else "not-listed")
"""


def test_an_announcement_cannot_choose_the_version_or_the_kind_nor_get_a_genuine_image_refused(
        signer, sim_build, tmp_path):  # type: ignore[no-untyped-def]
    """The announcement is a hint: a device on version RUNNING fetches what claims to
    be 200.0.0 and refuses it by the signed version; a firmware image announced as an
    app is refused by its signed kind; chunks tampered under a genuine image's digest
    are refused without that digest being remembered, so the genuine image still
    installs."""
    d, key, _, sign = signer
    old = d / "old.img"
    old.write_bytes(sign("old.img", RUNNING, counter=7))
    firmware = d / "fw.img"
    firmware.write_bytes(sign("fw.img", "200.0.0", kind="firmware"))
    genuine = d / "genuine.img"
    genuine.write_bytes(sign("genuine.img", "200.0.0"))
    tampered = d / "tampered.img"
    data = bytearray(genuine.read_bytes())
    data[40] ^= 1  # a payload byte: the digest no longer matches
    tampered.write_bytes(bytes(data))
    digest = images.image_digest(genuine).hex()
    cases = [("version-lie", old, "app", "200.0.0", images.image_digest(old).hex()),
             ("kind-lie", firmware, "app", "200.0.0", images.image_digest(firmware).hex()),
             ("tampered-chunks", tampered, "app", "200.0.0", digest),
             ("genuine", genuine, "app", "200.0.0", digest)]
    state = device_state(tmp_path, key)
    manifest = state / "cases.txt"
    manifest.write_text("".join(" ".join(map(str, c)) + "\n" for c in cases))
    done = subprocess.run([micropython(), "-X", f"heapsize={SIM_HEAP}", "-c",  # the app's
                           UPDATER.replace("CASES", repr(str(manifest)))],
                          cwd=sim_build, env=sim_env(sim_build, state), capture_output=True,
                          text=True, timeout=300, check=False)
    lines = [line for line in done.stdout.splitlines() if not line[:1].isdigit()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines == [
        f"version-lie refused {RUNNING}+0 Downgrade listed",  # the signed version, reported
        "kind-lie refused 200.0.0+0 WrongKind listed",
        "tampered-chunks refused 200.0.0 DigestMismatch not-listed",
        "genuine installed -",
    ], done.stdout
    record = json.loads((state / "apps" / "boot.json").read_text())
    assert record["trial"]["version"] == "200.0.0+0" and record["state"] == "new"
    assert RESET_EXIT  # the sim board's reset is sys.exit(RESET_EXIT), caught above


def test_a_revoked_update_key_is_refused_even_if_the_trust_file_lists_it(
        signer, sim_build, tmp_path):  # type: ignore[no-untyped-def]
    d, key, other, sign = signer
    spki, other_spki = images.public_spki(key), images.public_spki(other)
    doc = json.loads(images.trust_document("sim", [spki, other_spki], revoked=[spki]))
    assert doc["keys"] == [other_spki.hex()]
    assert doc["revoked"] == [hashlib.sha256(spki).hexdigest()]
    assert json.loads(images.trust_document("sim", [spki], revoked=[hashlib.sha256(
        other_spki).digest()]))["revoked"] == [hashlib.sha256(other_spki).hexdigest()]
    state = device_state(tmp_path, key)
    doc["keys"] = [spki.hex(), other_spki.hex()]  # listed, and revoked: revoked wins
    (state / "certs" / "update-trust.json").write_text(json.dumps(doc))
    got = run_cases(state, sim_build, {"revoked-key": sign("rk.img", "9.0.0"),
                                       "other-key": sign("ok.img", "9.0.0", key_path=other)},
                    heap=HEAP)
    assert got == {"revoked-key": "RevokedKey untouched", "other-key": "OK changed"}, got


def test_the_host_refuses_a_small_order_or_foreign_key_in_a_trust_file(signer):  # type: ignore[no-untyped-def]
    d, key, _, _ = signer
    spki = images.public_spki(key)
    for raw in images.SMALL_ORDER_KEYS:
        with pytest.raises(ToolError, match="small order"):
            images.trust_document("sim", [spki, images.ED25519_SPKI_PREFIX + raw])
    x25519 = bytes.fromhex("302a300506032b656e032100") + spki[12:]
    with pytest.raises(ToolError, match="not an Ed25519"):
        images.trust_document("sim", [x25519])
    with pytest.raises(ToolError, match="every update key is revoked"):
        images.trust_document("sim", [spki], revoked=[spki])
