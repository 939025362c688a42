"""200 power cuts (kill -9) while the device seals in a loop: no partial IV is ever reused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from host_tools.paths import micropython
from tests.conftest import device_env

SEAL_FOREVER = """
import board
from wearsafe import cose, keystore, seal
store = keystore.Keystore(board.nvs("wearsafe"))
if not store.provisioned():
    store.provision("dev-1", bytes(32), b"k", bytes(13))
sealer = seal.Sealer(store, "devices/dev-1/up")
while True:
    print(cose.parse(sealer.seal(b"reading"))[2])
"""


def test_no_partial_iv_is_used_twice_across_200_power_cuts(sim_build, tmp_path, record_property):
    rng = random.Random(20261122)
    seen: set[int] = set()
    duplicates: list[int] = []
    sealed_before_cuts = 0
    for _ in range(200):
        device = subprocess.Popen([micropython(), "-X", "heapsize=96K", "-c", SEAL_FOREVER],
                                  cwd=tmp_path, env=device_env(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Cut at a point counted in seals, not in seconds, so a slow machine
        # cuts as deep into the loop as a fast one; a quarter of the cuts land
        # during start-up (provisioning, reserving the first counter block).
        cut_after = rng.choice([0, rng.randint(1, 200), rng.randint(1, 200), rng.randint(200, 600)])
        lines = [device.stdout.readline() for _ in range(cut_after)]
        time.sleep(rng.uniform(0.0, 0.005))
        os.kill(device.pid, signal.SIGKILL)
        out, err = device.stdout.read(), device.stderr.read()  # through the same buffer
        assert device.wait() == -signal.SIGKILL, err.decode()
        sealed_before_cuts += cut_after
        lines = b"".join(lines + [out]).decode().split("\n")[:-1]  # the last one may be torn
        for counter in map(int, lines):
            if counter in seen:
                duplicates.append(counter)
            seen.add(counter)
    record_property("faults_injected", 200)
    assert not duplicates, f"partial IVs reused: {duplicates[:10]}"
    assert len(seen) >= sealed_before_cuts > 20_000  # the loop really ran between the cuts
