"""The device's payload key as an ESP-IDF NVS partition image, as factories write keys.

Espressif's generator (esp-idf-nvs-partition-gen, pinned in pyproject.toml)
turns a CSV into the image of a whole NVS partition; esptool writes it at the
partition's offset (host_tools/device/flash.py). The image holds exactly what
firmware/lib/wearsafe/keystore.py Keystore.provision writes, in its namespace,
all as blobs (what esp32.NVS.get_blob reads): dev_id, kid, base_iv, ctr_ceil
(the nonce counter's ceiling, 8 zero bytes: counting starts at 0) and pkey.

The generator reads the key from a CSV file: it is written into a private
temporary directory (0700, files 0600, the generator run with umask 077) and
removed with it. The key is never on a command line, and neither this module's
errors nor the generator's output that they quote ever carry it. The image is
not encrypted: MicroPython's ESP32_GENERIC builds do not enable NVS encryption
(the generator's `encrypt` subcommand makes the image for builds that do).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from host_tools.fleet.pki import private_temp_file
from host_tools.paths import ToolError

NAMESPACE = "wearsafe"  # keystore.NAMESPACE
GENERATOR = "esp_idf_nvs_partition_gen"  # the package's module: `python -m` runs its CLI
PAGE = 4096
MIN_SIZE = 3 * PAGE  # the generator's and ESP-IDF's least read/write NVS partition
# (field of the factory key record, its length in bytes) as Keystore.provision checks them
_KEY_LEN, _IV_LEN, _KID_MAX, _ID_MAX = 32, 13, 16, 32


def _blob(record: Mapping[str, object], field: str, sizes: range) -> bytes:
    """A hex field of the record as bytes; ToolError naming the field, never its value."""
    text = record.get(field)
    try:
        value = bytes.fromhex(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if value is None or len(value) not in sizes:
        want = (f"{sizes.start} bytes" if len(sizes) == 1
                else f"{sizes.start} to {sizes.stop - 1} bytes")
        raise ToolError(f"the factory key record's {field!r} is not {want} in hex: the "
                        "bundle is damaged; re-provision it (`wearsafe provision --server DIR "
                        "--force --out BUNDLE`)")
    return value


def keystore_blobs(record: Mapping[str, object]) -> list[tuple[str, bytes]]:
    """(NVS key, value) in Keystore.provision's order: pkey last, its presence means complete."""
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or not 1 <= len(device_id.encode()) <= _ID_MAX:
        raise ToolError(f"the factory key record has no device_id of 1 to {_ID_MAX} "
                        "characters: the bundle is damaged; re-provision it")
    return [("dev_id", device_id.encode()),
            ("kid", _blob(record, "key_id", range(1, _KID_MAX + 1))),
            ("base_iv", _blob(record, "base_iv", range(_IV_LEN, _IV_LEN + 1))),
            ("ctr_ceil", bytes(8)),
            ("pkey", _blob(record, "key", range(_KEY_LEN, _KEY_LEN + 1)))]


def nvs_csv(blobs: list[tuple[str, bytes]]) -> str:
    """The generator's input: key,type,encoding,value; a namespace row, then its blobs."""
    rows = ["key,type,encoding,value", f"{NAMESPACE},namespace,,"]
    rows += [f"{name},data,hex2bin,{value.hex()}" for name, value in blobs]
    return "\n".join(rows) + "\n"


def nvs_image(record: Mapping[str, object], size: int) -> bytes:
    """The image of an NVS partition of `size` bytes holding the factory key record
    (the JSON of <bundle>/factory/payload-key.json), made by the real generator."""
    if size % PAGE or size < MIN_SIZE:
        raise ToolError(f"an NVS partition of 0x{size:x} bytes cannot hold the payload key: "
                        f"it must be a multiple of 0x{PAGE:x} bytes, at least 0x{MIN_SIZE:x}")
    blobs = keystore_blobs(record)
    with private_temp_file(nvs_csv(blobs).encode(), "keystore.csv") as csv:
        work = csv.parent  # the generator writes the image beside it, removed with it
        done = _generate(work, csv.name, "nvs.bin", size)
        image = work / "nvs.bin"
        made = image.read_bytes() if image.is_file() else b""
    if done.returncode != 0 or len(made) != size:
        said = _redacted(done.stdout + done.stderr, [v for _, v in blobs])
        raise ToolError(f"the NVS partition generator ({GENERATOR}) made no image of 0x{size:x} "
                        f"bytes (exit {done.returncode}): {said or 'it said nothing'}. Install "
                        "the pinned tools (`make deps`) and flash again: the key is still in "
                        "the bundle")
    return made


def _generate(work: Path, csv: str, out: str, size: int) -> subprocess.CompletedProcess[str]:
    # esp_pylib reports errors to an IDE over a WebSocket when ESP_IDE_WS is set: never here
    env = {k: v for k, v in os.environ.items() if k != "ESP_IDE_WS"}
    argv = [sys.executable, "-m", GENERATOR, "generate", csv, out, hex(size),
            "--version", "2", "--outdir", str(work)]
    try:
        return subprocess.run(argv, cwd=work, env=env, umask=0o077, capture_output=True,
                              text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -1, "", "no answer within 120 s")


def _redacted(output: str, secrets: list[bytes]) -> str:
    """The generator's last words, without any value of the record in them."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    text = lines[-1][:300] if lines else ""
    for secret in secrets:
        for form in (secret.hex(), secret.hex().upper()):
            text = text.replace(form, "<redacted>")
    return text
