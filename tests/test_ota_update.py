"""Updates end to end through Mosquitto: a device on version 1 takes version 2,
and a version 3 that cannot reach the broker after its boot rolls back by itself."""

from __future__ import annotations

import json
from pathlib import Path

from host_tools.device.build import compile_module
from host_tools.fleet.export import readings
from host_tools.paths import FIRMWARE
from host_tools.sim.fleet import RESET_EXIT
from host_tools.updates import images, release

RESET = RESET_EXIT  # the sim board's reset: the process ends, the host starts it again


def app_image(fleet, tmp: Path, version: str, counter: int,  # type: ignore[no-untyped-def]
              link_patch: tuple[str, str] | None = None, board: str = "sim") -> Path:
    """The board's build as an app bundle whose wearsafe.VERSION is `version`, signed."""
    replace = {}
    sources = {"wearsafe/__init__.py": (FIRMWARE / "lib/wearsafe/__init__.py").read_text()
               .replace('VERSION = "0.1.0"', f'VERSION = "{version}"')}
    if link_patch:
        link = (FIRMWARE / "lib/wearsafe/link.py").read_text()
        assert link.count(link_patch[0]) == 1
        sources["wearsafe/link.py"] = link.replace(*link_patch)
    for rel, text in sources.items():
        src = tmp / f"v{version}" / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        compile_module(src, src.with_suffix(".mpy"), rel)
        replace[rel.replace(".py", ".mpy")] = src.with_suffix(".mpy").read_bytes()
    bundle = images.app_bundle(board, tmp / f"app-{version}.tar", replace)
    return images.sign(bundle, tmp / f"app-{version}.img", fleet.signing_key, version,
                       counter, board, "app")


def status_values(fleet, device) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(r["quantity"], r["value"]) for r in readings(fleet.server, device.device_id)
            if isinstance(r["value"], str)]


def test_v2_installs_and_confirms_and_v3_that_cannot_connect_rolls_back(fleet, tmp_path):  # type: ignore[no-untyped-def]
    device = fleet.add_device(batch_seconds=5)
    settings = json.loads((device.state / "settings.json").read_text())
    settings["confirm_timeout_s"] = 30
    (device.state / "settings.json").write_text(json.dumps(settings))

    release.publish_image(fleet.server, fleet.broker.port, app_image(fleet, tmp_path, "2.0.0", 2),
                          "sim")
    run = fleet.run_app(device, 120)
    assert run.returncode == RESET, run.stdout + run.stderr
    assert "update-installed app 2.0.0+0" in run.stdout
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 20)
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.wait_stored(stored + 1) > stored
    assert ("update", "installed 2.0.0+0 app") in status_values(fleet, device)
    assert ("version", "2.0.0") in status_values(fleet, device)

    v3 = app_image(fleet, tmp_path, "3.0.0", 3,
                   ('self._port = settings["broker_port"]',
                    'self._port = settings["broker_port"] + 1'))
    release.publish_image(fleet.server, fleet.broker.port, v3, "sim")
    run = fleet.run_app(device, 60)
    assert run.returncode == RESET and "update-installed app 3.0.0+0" in run.stdout, run.stdout
    for trial in range(3):  # tried three times (a power cut could have ended a trial)
        if trial:
            run = fleet.run_app(device, 60)  # rolled back to 2, which fetches 3 again
            assert run.returncode == RESET and "update-installed app 3.0.0+0" in run.stdout
        run = fleet.run_app(device, 120)  # version 3 on trial: no broker, no confirmation
        assert run.returncode == RESET and "update-unconfirmed" in run.stdout, run.stdout
    stored = fleet.ingest.stored
    run = fleet.run_app(device, 30)  # the boot rolls back to version 2, which reports
    assert run.returncode == 0, run.stdout + run.stderr
    assert "update-fetching" not in run.stdout  # version 3 is never fetched again
    assert fleet.wait_stored(stored + 1) > stored
    values = status_values(fleet, device)
    assert ("update", "rolled-back 3.0.0+0 app") in values
    assert values[-2:] == [("version", "2.0.0"), ("update", "rolled-back 3.0.0+0 app")]
    record = json.loads((device.state / "apps" / "boot.json").read_text())
    assert record["active"] == "a" and record["state"] == "valid"
    assert record["rollbacks"] == {images.image_digest(v3).hex(): 3}
