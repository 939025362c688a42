"""The payload key as an ESP-IDF NVS partition image (issue 13, finding 6): Espressif's
generator makes it (host_tools/device/nvs_image.py), `wearsafe flash` writes it with esptool
at the firmware's nvs partition, and the esp32-port model reads it as ESP-IDF does
(board/sim/esp32port/nvsimage.py) through the firmware's own keystore."""

from __future__ import annotations

import json
import stat
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from host_tools.device import flash, nvs_image
from host_tools.device.build import build
from host_tools.device.provision import FACTORY_KEY, provision
from host_tools.fleet.server import Server
from host_tools.paths import ToolError, micropython
from host_tools.testing.esp32_model import build_model, install_payload_key, power_on
from tests.esp_images import OTA_CSV, combined_image

PAGE, ENTRY = 4096, 32
# the OTA table with its nvs partition moved and shrunk: flash must take both from it
MOVED_NVS_CSV = OTA_CSV.replace("nvs,      data, nvs,     0x9000,   0x4000,",
                                "nvs,      data, nvs,     0xa000,   0x3000,")
KEYSTORE = """
import board
from wearsafe import keystore
store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
print(store.provisioned())
try:
    print(store.device_id(), store.key_id().hex(), store.base_iv().hex())
    print(store.payload_key().hex(), store.counter().next())
except keystore.KeystoreError as e:
    print("KeystoreError:", e)
"""


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    server = Server(tmp_path / "server").init()
    provision(server, "esp32_devkitc", tmp_path / "dev",
              {"broker_host": "localhost", "broker_port": 8883, "batch_seconds": 60})
    return tmp_path / "dev"


def record(bundle: Path) -> dict[str, str]:
    return json.loads((bundle / FACTORY_KEY).read_text())  # type: ignore[no-any-return]


def on_model(state: Path) -> list[str]:
    """The firmware's keystore on the modelled ESP32, powered on in `state`."""
    done = subprocess.run(**power_on(build("esp32_devkitc"), state,
                                     f"exec({KEYSTORE!r})", 64 * 1024),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def decode(image: bytes) -> tuple[dict[str, dict[str, bytes]], dict[str, int]]:
    """{namespace: {key: blob}}, read straight from the format (ESP-IDF nvs_flash:
    nvs_constants.h, nvs_types.hpp/.cpp) with struct and zlib: a reading independent of
    the model's; and where each blob's entries are, for the tests to damage ("key
    index": its BLOB_IDX, "key data": its BLOB_DATA entry, its data right after)."""
    names: dict[int, str] = {}
    indexes: dict[tuple[int, str], tuple[int, int, int]] = {}
    chunks: dict[tuple[int, str, int], bytes] = {}
    where: dict[str, int] = {}
    for base in range(0, len(image), PAGE):
        page = image[base:base + PAGE]
        state, _, version = struct.unpack_from("<IIB", page)
        if state == 0xFFFFFFFF:
            assert page == b"\xff" * PAGE  # erased, not corrupt
            continue
        assert zlib.crc32(page[4:28], 0xFFFFFFFF) == struct.unpack_from("<I", page, 28)[0]
        assert version == 0xFE  # NVS_VERSION: multi-page blobs
        i = 0
        while i < 126:
            if (page[32 + i // 4] >> (i % 4 * 2)) & 3 != 2:  # not WRITTEN
                i += 1
                continue
            at = 64 + ENTRY * i
            entry = page[at:at + ENTRY]
            ns, dtype, span, chunk, crc = struct.unpack_from("<BBBBI", entry)
            assert zlib.crc32(entry[:4] + entry[8:], 0xFFFFFFFF) == crc
            key = entry[8:24].split(b"\0")[0].decode()
            if ns == 0 and dtype == 0x01:  # a namespace: U8 in namespace 0
                names[entry[24]] = key
            elif dtype == 0x48:  # BLOB_IDX: size, chunk count, chunk start
                indexes[(ns, key)] = struct.unpack_from("<IBB", entry, 24)
                where[key + " index"] = base + at
            elif dtype == 0x42:  # BLOB_DATA: size, CRC of the data that follows
                size, _, data_crc = struct.unpack_from("<HHI", entry, 24)
                data = page[at + ENTRY:at + ENTRY + size]
                assert zlib.crc32(data, 0xFFFFFFFF) == data_crc
                chunks[(ns, key, chunk)] = data
                where[key + " data"] = base + at
            else:
                raise AssertionError(f"unexpected item type 0x{dtype:02x} ({key})")
            i += span
    out: dict[str, dict[str, bytes]] = {}
    for (ns, key), (size, count, start) in indexes.items():
        data = b"".join(chunks[(ns, key, start + n)] for n in range(count))
        assert len(data) == size
        out.setdefault(names[ns], {})[key] = data
    return out, where


def expected(secret: dict[str, str]) -> dict[str, bytes]:
    return {"dev_id": secret["device_id"].encode(), "kid": bytes.fromhex(secret["key_id"]),
            "base_iv": bytes.fromhex(secret["base_iv"]), "ctr_ceil": bytes(8),
            "pkey": bytes.fromhex(secret["key"])}


def test_the_model_reads_the_generated_image_through_the_firmware_keystore(bundle):
    secret = record(bundle)
    install_payload_key(bundle)  # the image, made by the generator, into esp32-nvs.bin
    assert not (bundle / "factory").exists()  # the key left the bundle
    nvs = bundle / "esp32-nvs.bin"
    assert len(nvs.read_bytes()) == 0x4000 and not stat.S_IMODE(nvs.stat().st_mode) & 0o077
    assert not list(bundle.glob("nvs-*.bin"))  # nothing written in the model yet
    lines = on_model(bundle)
    assert lines == ["True", secret["device_id"], secret["key_id"], secret["base_iv"],
                     secret["key"], "0"]
    # the counter's first block is on flash now; the next boot resumes above it
    assert (bundle / "nvs-wearsafe.bin").exists()
    assert on_model(bundle)[-1] == "1024"


def test_the_image_reads_the_same_in_plain_python_and_in_the_model(bundle, tmp_path):
    secret = record(bundle)
    image = nvs_image.nvs_image(secret, 0x4000)
    assert decode(image)[0] == {"wearsafe": expected(secret)}
    assert image[-PAGE:] == b"\xff" * PAGE  # the free page ESP-IDF needs to load it
    (tmp_path / "nvs.bin").write_bytes(image)
    code = ("import nvsimage\nf = open('nvs.bin', 'rb'); data = f.read()\n"
            "def read(at, buf): buf[:] = data[at:at + len(buf)]\n"
            "for ns in ('wearsafe', 'ota'):\n"
            "    items = nvsimage.namespace_items(read, len(data), ns)\n"
            "    print(ns, sorted((k, v[0], v[1].hex()) for k, v in items.items()))\n")
    done = subprocess.run([micropython(), "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, check=False,
                          env={"MICROPYPATH": str(build_model())})
    assert done.returncode == 0, done.stderr
    model = done.stdout.splitlines()
    blobs = sorted((k, 1, v.hex()) for k, v in expected(secret).items())
    assert model == [f"wearsafe {blobs}", "ota []"]


@pytest.mark.parametrize("damage", ["pkey index entry", "pkey data entry", "pkey data",
                                    "page header"])
def test_a_flipped_bit_leaves_the_key_missing_not_wrong(bundle, damage):
    secret = record(bundle)
    image = bytearray(nvs_image.nvs_image(secret, 0x4000))
    where = decode(bytes(image))[1]
    # bits that only a CRC guards: each item's reserved bytes, the data, the page's seq
    at = {"pkey index entry": where["pkey index"] + 30,  # blobIndex.reserved
          "pkey data entry": where["pkey data"] + 26,  # varLength.reserved
          "pkey data": where["pkey data"] + ENTRY + 5,  # the key itself
          "page header": 5}[damage]
    image[at] ^= 0x04
    install_payload_key(bundle)
    (bundle / "esp32-nvs.bin").write_bytes(image)
    lines = on_model(bundle)
    assert lines[0] == "False" and secret["key"] not in lines  # never a wrong key either
    if damage == "page header":  # the whole page is corrupt: nothing is found
        assert lines[1:] == ["KeystoreError:", "keystore", "is", "not", "provisioned", "(no",
                             "dev_id):", "provision", "the", "device"]
    else:  # the other items stand; the key alone is not found
        assert lines[1:4] == [secret["device_id"], secret["key_id"], secret["base_iv"]]
        assert " ".join(lines[4:]) == ("KeystoreError: keystore is not provisioned (no pkey): "
                                       "provision the device")


def test_the_record_is_checked_and_no_error_or_output_carries_the_key(bundle, monkeypatch):
    secret = record(bundle)
    short = dict(secret, key=secret["key"][:-2])
    with pytest.raises(ToolError) as bad:
        nvs_image.nvs_image(short, 0x4000)
    assert "'key' is not 32 bytes in hex" in str(bad.value)
    assert short["key"] not in str(bad.value)
    with pytest.raises(ToolError, match="must be a multiple of 0x1000 bytes, at least 0x3000"):
        nvs_image.nvs_image(secret, 0x2000)
    monkeypatch.setattr(nvs_image, "GENERATOR", "esp_idf_nvs_partition_gen_not_there")
    scratch = private_tempdir(monkeypatch, bundle.parent)
    with pytest.raises(ToolError) as failed:
        nvs_image.nvs_image(secret, 0x4000)
    assert "made no image of 0x4000 bytes" in str(failed.value)
    assert "No module named esp_idf_nvs_partition_gen_not_there" in str(failed.value)
    assert not any(v in str(failed.value) for v in secret.values() if v != secret["device_id"])
    assert not any(scratch.iterdir())  # its CSV went with its directory


def private_tempdir(monkeypatch: pytest.MonkeyPatch, parent: Path) -> Path:
    """A fresh directory as the host's temporary directory: what is left there shows."""
    scratch = parent / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


class Recorder:
    """flash._run with no board: records each step and what the key's image held."""

    def __init__(self, fail_on_key: bool = False) -> None:
        self.steps: list[list[str]] = []
        self.image = b""
        self.modes: tuple[int, int] = (0, 0)
        self.fail_on_key = fail_on_key

    def __call__(self, step: list[str], timeout: float = 600) -> None:
        self.steps.append(step)
        if step[-1].endswith("nvs-wearsafe.bin"):
            path = Path(step[-1])
            self.image = path.read_bytes()
            self.modes = (stat.S_IMODE(path.parent.stat().st_mode),
                          stat.S_IMODE(path.stat().st_mode))
            if self.fail_on_key:
                raise ToolError(f"esptool failed (exit 2): {' '.join(step)}")


@pytest.mark.parametrize("esptool_fails", [False, True])
def test_flash_writes_the_image_at_the_firmwares_nvs_partition_and_keeps_no_key(
        bundle, tmp_path, monkeypatch, esptool_fails):
    secret = record(bundle)
    firmware = tmp_path / "firmware.bin"
    firmware.write_bytes(combined_image(MOVED_NVS_CSV))
    run = Recorder(fail_on_key=esptool_fails)
    monkeypatch.setattr(flash, "_run", run)
    commands: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv: Any, *args: Any, **kwargs: Any) -> Any:  # the generator's command line
        commands.append(list(map(str, argv)))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    scratch = private_tempdir(monkeypatch, tmp_path)
    said: list[str] = []
    if esptool_fails:
        with pytest.raises(ToolError) as failed:
            flash.flash("/dev/ttyUSB7", "esp32_devkitc", bundle, firmware=firmware,
                        say=said.append)
        assert "The payload key has left the bundle" in str(failed.value)
        assert "re-provision" in str(failed.value) and secret["key"] not in str(failed.value)
    else:
        flash.flash("/dev/ttyUSB7", "esp32_devkitc", bundle, firmware=firmware,
                    say=said.append)
    erase, firmware_step, key_step = run.steps[:3]
    assert erase[-1] == "erase-flash" and firmware_step[-2:] == ["0x1000", str(firmware)]
    assert key_step[-3:-1] == ["write-flash", "0xa000"]  # from the firmware's own table
    assert len(run.image) == 0x3000 and decode(run.image)[0] == {"wearsafe": expected(secret)}
    assert run.modes == (0o700, 0o600)
    assert not Path(key_step[-1]).exists() and not Path(key_step[-1]).parent.exists()
    assert not any(scratch.iterdir())  # no image, no CSV, no directory left on the host
    assert not (bundle / "factory").exists()  # the key left the bundle before it was sent
    if not esptool_fails:  # the application and the bundle follow, over mpremote
        assert all("mpremote" in step[0] for step in run.steps[3:]) and len(run.steps) > 5
        assert said[-1].startswith("flashed device ")
    else:
        assert len(run.steps) == 3
    generator = [c for c in commands if nvs_image.GENERATOR in c]
    assert len(generator) == 1 and generator[0][4:6] == ["keystore.csv", "nvs.bin"]
    shown = "\n".join(said) + repr(run.steps) + repr(commands)
    assert all(secret[f] not in shown for f in ("key", "key_id", "base_iv"))


def test_a_firmware_without_an_nvs_partition_is_refused(bundle, tmp_path):
    firmware = tmp_path / "firmware.bin"
    firmware.write_bytes(combined_image(OTA_CSV.replace("nvs,      data", "cfg,      data")))
    with pytest.raises(ToolError, match="has no NVS partition .* the payload key would have "
                                        "nowhere to go"):
        flash.flash("/dev/ttyUSB7", "esp32_devkitc", bundle, firmware=firmware, dry_run=True)
    assert (bundle / FACTORY_KEY).exists()
