"""100 power cuts (kill -9 of the sim device) while it downloads, installs,
swaps to and confirms an update: after every one, what the next power-on
boots is a complete image that passed verification (the factory image, or an
app slot holding exactly the signed bundle), and the boot record is whole."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

from host_tools.updates import release
from tests.test_ota_update import RESET, app_image

CUTS = 100


def bundle_files(image_tar: Path) -> dict[str, bytes]:
    with tarfile.open(image_tar) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def slot_files(slot: Path) -> dict[str, bytes]:
    return {p.relative_to(slot).as_posix(): p.read_bytes() for p in slot.rglob("*") if p.is_file()}


def boots(state: Path, bundle: dict[str, bytes]) -> str:
    """What the next power-on runs; fails unless it is complete and verified."""
    path = state / "apps" / "boot.json"
    if not path.exists():
        return "factory"
    record = json.loads(path.read_text())  # never torn: replaced by rename
    slot = record["active"]
    if record["state"] == "pending":  # the trial ended without confirmation
        slot = record["previous"]
    if slot != "factory":
        assert slot_files(state / "apps" / slot) == bundle, f"slot {slot} is not the bundle"
    return slot


def phase_of(log: str, record_before: dict) -> str:  # type: ignore[type-arg]
    if record_before.get("state") == "new":
        return "confirm"  # the cut came during the trial boot
    if "update-installing" in log:
        return "swap"  # verified; unpacking into the slot, or selecting it
    if "update-fetching" in log:
        return "download"
    return "connect"


def test_100_power_cuts_always_leave_a_complete_verified_image(fleet, tmp_path, record_property):  # type: ignore[no-untyped-def]
    device = fleet.add_device(batch_seconds=5)
    v2 = app_image(fleet, tmp_path, "2.0.0", 2)
    bundle = bundle_files(tmp_path / "app-2.0.0.tar")
    release.publish_image(fleet.server, fleet.broker.port, v2, "sim", chunk=8192)
    rng = random.Random(20261124)
    record_path = device.state / "apps" / "boot.json"
    phases: dict[str, int] = {}
    cuts = installs = 0
    while cuts < CUTS:
        before = json.loads(record_path.read_text()) if record_path.exists() else {}
        process = subprocess.Popen(**fleet.app_command(device, 30), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        # Half the runs go uncut, so updates complete and trials come; the rest are
        # cut at a random time within what the phase takes here (download and
        # install about 1 s, a trial boot to its confirmation under 1 s).
        trial = before.get("state") == "new"
        cut_at = rng.uniform(0.05, 0.8 if trial else 1.5) if rng.random() < 0.6 else 120
        try:
            log, _ = process.communicate(timeout=cut_at)
        except subprocess.TimeoutExpired:
            process.kill()  # the power cut
            log, _ = process.communicate()
            cuts += 1
            phase = phase_of(log, before)
            phases[phase] = phases.get(phase, 0) + 1
        assert process.returncode in (0, RESET, -9), log
        slot = boots(device.state, bundle)
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        if slot != "factory" and record.get("state") == "valid":
            installs += 1  # confirmed: back to the factory image for another round
            shutil.rmtree(device.state / "apps")
            (device.state / "nvs-ota.bin").unlink(missing_ok=True)
    print("power cuts by phase:", phases, "updates confirmed:", installs)
    record_property("faults_injected", cuts)
    assert installs >= 3, phases
    assert phases.get("download", 0) >= 5 and phases.get("confirm", 0) >= 5, phases
