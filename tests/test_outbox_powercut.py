"""200 power cuts (kill -9) while the device appends to and delivers from its outbox.

The device loop stores records whose content follows from their sequence
number and delivers them (peek, report, remove), so the host can tell: every
record delivered is intact, delivery never goes back in order, and every
record whose append returned is delivered in the end. A record may be
delivered twice only when the cut fell between delivery and removal (the
ingest deduplicates those).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from host_tools.paths import micropython
from tests.conftest import device_env

DEVICE_LOOP = """
import random
from wearsafe.outbox import Outbox

def content(k):  # self-describing: any damage shows
    return b"%d:" % k + bytes([k % 251]) * (k * 7 % 90 + 1)

def intact(payload):
    k = int(payload.split(b":")[0])
    return payload == content(k)

box = Outbox("outbox", segment_bytes=512, segments=64)
random.seed(SEED)
drain = DRAIN
while True:
    if not drain and random.getrandbits(8) < 120:
        seq = box.append(content(random.getrandbits(16)))
        print("A", seq)
        continue
    record = box.peek()
    if record is None:
        if drain:
            print("X", box.take_dropped())
            break
        continue
    seq, payload = record
    print("D", seq, "ok" if intact(payload) else "BAD")
    box.remove(seq)
"""


def _run(tmp_path, seed: int, drain: bool = False, cut_after: int | None = None,
         rng: random.Random | None = None) -> list[str]:
    """The device loop; cut (kill -9) after `cut_after` lines of its output: a depth
    counted in work done, the same on a slow machine as on a fast one."""
    code = DEVICE_LOOP.replace("SEED", str(seed)).replace("DRAIN", str(drain))
    argv = [micropython(), "-X", "heapsize=64K", "-c", code]
    device = subprocess.Popen(argv, cwd=tmp_path, env=device_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert device.stdout is not None
    if cut_after is None:
        out, err = device.communicate(timeout=120)
        assert device.returncode == 0, err.decode()
        return out.decode().split("\n")[:-1]
    head = [device.stdout.readline() for _ in range(cut_after)]
    time.sleep(rng.uniform(0, 0.003) if rng else 0)  # within the next operation
    os.kill(device.pid, signal.SIGKILL)
    out, err = device.stdout.read(), device.stderr.read()  # the rest, through the same buffer
    assert device.wait() == -signal.SIGKILL, err.decode()
    return b"".join(head + [out]).decode().split("\n")[:-1]  # the last line may be torn


def test_outbox_recovers_from_200_power_cuts_losing_nothing_stored(sim_build, tmp_path,
                                                                   record_property):
    rng = random.Random(20261124)
    stored: set[int] = set()
    delivered: list[int] = []
    corrupt: list[str] = []
    for i in range(200):
        depth = rng.choice([0, rng.randint(1, 150), rng.randint(1, 300)])
        lines = _run(tmp_path, seed=i + 1, cut_after=depth, rng=rng)
        lines += _run(tmp_path, seed=0, drain=True) if i == 199 else []
        for line in lines:
            kind, seq, *verdict = line.split()
            if kind == "X":
                assert seq == "0", "the outbox overflowed: the test must stay within it"
            elif kind == "A":
                stored.add(int(seq))
            else:
                delivered.append(int(seq))
                if verdict != ["ok"]:
                    corrupt.append(line)
    assert not corrupt, corrupt[:5]
    backwards = [(a, b) for a, b in zip(delivered, delivered[1:], strict=False) if b < a]
    assert not backwards, f"delivery went back in order: {backwards[:5]}"
    lost = stored - set(delivered)
    record_property("faults_injected", 200)
    record_property("messages_lost", len(lost))
    assert not lost, f"stored records never delivered: {sorted(lost)[:10]}"
    assert len(stored) > 1000  # the loop really ran between the cuts
    redelivered = len(delivered) - len(set(delivered))
    assert redelivered <= 200  # at most the one in flight at each cut
