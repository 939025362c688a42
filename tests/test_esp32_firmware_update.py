"""Firmware and app updates end to end on modelled ESP32s (board/esp32_devkitc's build over
the esp32-port model, through the real Mosquitto and the ingest).

The payload is an ESP app image (tests/esp_images.py) as the OTA variant's
micropython.bin holds one; the model's set_boot checks it as ESP-IDF's
esp_image_verify does, its bootloader boots a new slot pending-verify and rolls
back one that was never confirmed (board/sim/esp32port/flashmodel.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from host_tools.sim.fleet import RESET_EXIT
from host_tools.testing.esp32_model import BOARD, power_on
from host_tools.updates import images, release
from tests.esp_images import app_image, combined_image
from tests.test_ota_update import app_image as signed_app
from tests.test_ota_update import status_values

COUNTER = """
import board
from wearsafe.ota import image, install
print(install.Counters(board.nvs("ota")).value(image.KIND_FIRMWARE))
"""


def firmware_image(fleet, tmp: Path, version: str, counter: int,  # type: ignore[no-untyped-def]
                   payload: bytes | None = None) -> Path:
    raw = tmp / f"micropython-{version}.bin"
    raw.write_bytes(app_image() if payload is None else payload)
    return images.sign(raw, tmp / f"firmware-{version}.img", fleet.signing_key, version,
                       counter, BOARD, "firmware")


def otadata(device) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return json.loads((device.state / "esp32-otadata.json").read_text())


def counter(fleet, device) -> int:  # type: ignore[no-untyped-def]
    done = subprocess.run(**power_on(fleet.fs, device.state, f"exec({COUNTER!r})", 64 * 1024),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split()[-1])


def firmware_version(device) -> str:  # type: ignore[no-untyped-def]
    """The confirmed firmware's version, as the boot record keeps it."""
    return json.loads((device.state / "apps" / "boot.json").read_text())["firmware_version"]


def shorter_trials(device, seconds: int = 30) -> None:  # type: ignore[no-untyped-def]
    settings = json.loads((device.state / "settings.json").read_text())
    settings["confirm_timeout_s"] = seconds
    (device.state / "settings.json").write_text(json.dumps(settings))


def test_firmware_lands_in_the_other_slot_is_confirmed_and_an_unconfirmed_one_rolls_back(  # type: ignore[no-untyped-def]
        esp32_fleet, tmp_path):
    fleet = esp32_fleet
    device = fleet.add_device(batch_seconds=5)
    shorter_trials(device)
    release.publish_image(fleet.server, fleet.broker.port,
                          firmware_image(fleet, tmp_path, "1.30.0", 2), BOARD)

    run = fleet.run_app(device, 120)
    assert run.returncode == RESET_EXIT, run.stdout + run.stderr
    assert "update-installed firmware 1.30.0+0" in run.stdout
    assert otadata(device)["state"] == "new"
    assert (device.state / "esp32-ota_1.bin").read_bytes().startswith(app_image())
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 20)  # the bootloader boots ota_1 pending; delivery confirms it
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.wait_stored(stored + 1) > stored
    assert ("update", "installed 1.30.0+0 firmware") in status_values(fleet, device)
    assert otadata(device)["state"] == "valid"
    assert counter(fleet, device) == 2
    assert firmware_version(device) == "1.30.0+0"  # what the next boot reports as running

    release.publish_image(fleet.server, fleet.broker.port,
                          firmware_image(fleet, tmp_path, "1.31.0", 3), BOARD)
    run = fleet.run_app(device, 60)
    assert run.returncode == RESET_EXIT and "update-installed firmware 1.31.0+0" in run.stdout
    (device.state / "radio-off").touch()  # the new firmware never reaches the broker
    run = fleet.run_app(device, 120)
    assert run.returncode == RESET_EXIT and "update-unconfirmed" in run.stdout, run.stdout
    assert otadata(device)["state"] == "pending-verify"
    (device.state / "radio-off").unlink()
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 20)  # the bootloader rolls back to ota_1 by itself
    assert "bootloader: ota_0 was not confirmed; rolling back" in run.stdout, run.stdout
    assert run.returncode in (0, RESET_EXIT), run.stdout + run.stderr  # it may try 1.31 again
    fleet.wait_stored(stored + 1)
    assert ("update", "rolled-back 1.31.0+0 firmware") in status_values(fleet, device), run.stdout
    assert counter(fleet, device) == 2  # never raised for an image that was not confirmed
    assert firmware_version(device) == "1.30.0+0"


def test_an_image_the_bootloader_would_refuse_is_refused_once_and_the_device_keeps_running(  # type: ignore[no-untyped-def]
        esp32_fleet, tmp_path):
    """Signed, yet not an app image (the combined file, or garbage): set_boot refuses
    it, the device reports it, boots on from where it is and never fetches it again."""
    fleet = esp32_fleet
    device = fleet.add_device(batch_seconds=5)
    for version, payload in (("1.30.0", combined_image()), ("1.31.0", bytes(range(256)) * 64)):
        release.publish_image(fleet.server, fleet.broker.port,
                              firmware_image(fleet, tmp_path, version, 2, payload), BOARD)
        stored = fleet.ingest.stored
        run = fleet.run_app(device, 30)
        assert run.returncode == 0, run.stdout + run.stderr  # no reset, no loop
        assert run.stdout.count("update-fetching") == 1, run.stdout
        assert "update-refused UpdateError" in run.stdout
        assert "esp_image: ota_1:" in run.stdout  # the model's set_boot said why
        fleet.wait_stored(stored + 2)
        assert ("update", f"refused {version}+0 UpdateError") in status_values(fleet, device)
        assert not (device.state / "esp32-otadata.json").exists()  # nothing selected
    assert counter(fleet, device) == 0


def test_a_firmware_update_on_the_stock_image_is_declined_once(esp32_fleet, tmp_path):  # type: ignore[no-untyped-def]
    fleet = esp32_fleet
    device = fleet.add_device(batch_seconds=5)
    release.publish_image(fleet.server, fleet.broker.port,
                          firmware_image(fleet, tmp_path, "1.30.0", 2), BOARD)
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 30, WEARSAFE_ESP32_VARIANT="stock")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("update-unavailable") == 1, run.stdout
    assert "OTA variant" in run.stdout and "update-fetching" not in run.stdout
    assert fleet.wait_stored(stored + 2) >= stored + 2  # and it keeps delivering readings


def test_an_app_update_installs_and_is_confirmed_on_the_model(esp32_fleet, tmp_path):  # type: ignore[no-untyped-def]
    fleet = esp32_fleet
    device = fleet.add_device(batch_seconds=5)
    release.publish_image(fleet.server, fleet.broker.port,
                          signed_app(fleet, tmp_path, "2.0.0", 2, board=BOARD), BOARD)
    run = fleet.run_app(device, 120)
    assert run.returncode == RESET_EXIT, run.stdout + run.stderr
    assert "update-installed app 2.0.0+0" in run.stdout
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 20)
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.wait_stored(stored + 2) >= stored + 2
    values = status_values(fleet, device)
    assert ("update", "installed 2.0.0+0 app") in values and ("version", "2.0.0") in values
