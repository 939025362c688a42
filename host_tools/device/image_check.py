"""`wearsafe verify-image`: the device's own image verifier, run on the unix port
with a device bundle's trust anchors and counters, says whether a board would
accept an image before anyone publishes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from host_tools.device.build import build
from host_tools.device.provision import sim_env
from host_tools.paths import ToolError, micropython
from host_tools.updates.images import TRUST_FILE

VERIFY_ON_DEVICE = """
import board, sys
from wearsafe.ota import image, install
state = board.state_dir()
try:
    inst = install.Installer(board, install.load_trust(state + "/certs/update-trust.json"),
                             install.Counters(board.nvs("ota")))
    img = install.run_file(inst, sys.argv[1], check_only=True)
    print("accepted:", image.KINDS[img.kind], img.version, "security counter", img.counter)
except (image.ImageError, install.UpdateError) as e:
    print("refused:", type(e).__name__ + ":", e)
"""


def verify_on_device(image_path: Path, bundle: Path) -> tuple[bool, str]:
    """The device's own verifier (unix port) on `image_path`, with `bundle`'s trust and
    counters: (accepted, the verdict line)."""
    if not (bundle / TRUST_FILE).is_file():
        raise ToolError(f"{bundle / TRUST_FILE} is missing: is {bundle} a device bundle?")
    if not image_path.is_file():
        raise ToolError(f"{image_path}: no such image file")
    fs = build("sim")
    code = VERIFY_ON_DEVICE.replace("sys.argv[1]", repr(str(image_path.resolve())))
    done = subprocess.run([micropython(), "-X", "heapsize=96K", "-c", code], cwd=fs,
                          env=sim_env(fs, bundle.resolve()), capture_output=True, text=True,
                          timeout=300, check=False)
    verdict = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or not verdict.startswith(("accepted:", "refused:")):
        raise ToolError(f"the device verifier failed:\n{done.stdout}{done.stderr}")
    return verdict.startswith("accepted:"), verdict
