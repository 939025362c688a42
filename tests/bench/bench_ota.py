"""OTA image verification on the MicroPython unix port, for 1 MB and 4 MB images
signed by imgtool: throughput of the streaming verifier as a ratio to raw
hashlib.sha256 over the same bytes in the same run (goal >= 0.9), the Ed25519
verify time, and the peak GC heap above idle (goal: the same for both sizes,
under 16 KB), found as the smallest heap each step completes in.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools import images  # noqa: E402
from tests.bench.devicebench import figures, min_heap  # noqa: E402

SETUP = """
import hashlib, json, time
from binascii import unhexlify
from wearsafe.ota import image, install
from wearsafe.crypto import ed25519  # loaded at idle: the verifier imports it at its end
with open(TRUST) as f:
    t = json.load(f)
trust = {"class_id": unhexlify(t["class_id"]), "keys": [unhexlify(k) for k in t["keys"]]}
buf = bytearray(4096)
"""

VERIFY = """
v = image.Verifier(trust, install.NullSink(), 1 << 23, 0)
install.feed_file(v, IMAGE)
img = v.finish()
"""

TIMED = """
def hash_only():
    h = hashlib.sha256()
    with open(IMAGE, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.digest()
            h.update(memoryview(buf)[:n])
t = time.ticks_us(); hash_only(); raw = time.ticks_diff(time.ticks_us(), t)
code = compile(VERIFY_CODE, "verify", "exec")
t = time.ticks_us(); exec(code); full = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
ed25519.verify(trust["keys"][0][-32:], img.digest, bytes(64))
sig = time.ticks_diff(time.ticks_us(), t)
print("raw_us=%d" % raw, "verify_us=%d" % full, "ed25519_us=%d" % sig)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = images.keygen(d / "key.pem")
        trust = d / "trust.json"
        trust.write_text(images.trust_document("sim", [images.public_spki(key)]))
        for mb in (1, 4):
            payload = d / f"{mb}.bin"
            payload.write_bytes(random.Random(mb).randbytes(mb * 1000 * 1000))
            img = images.sign(payload, d / f"{mb}.img", key, "1.0.0", 1, "sim", "firmware")
            setup = SETUP.replace("TRUST", repr(str(trust))).replace("IMAGE", repr(str(img)))
            verify = VERIFY.replace("IMAGE", repr(str(img)))
            timed = TIMED.replace("VERIFY_CODE", repr(verify)).replace(
                "IMAGE", repr(str(img)))
            f = figures(setup + timed)
            idle, peak = min_heap(setup), min_heap(setup + verify)
            ratio = f["raw_us"] / (f["verify_us"] - f["ed25519_us"])
            print(f"verify {mb} MB image: {f['verify_us'] / 1000:.0f} ms; raw sha256 "
                  f"{f['raw_us'] / 1000:.0f} ms; throughput ratio (signature check aside) "
                  f"{ratio:.2f} (goal >= 0.9); Ed25519 verify {f['ed25519_us'] / 1000:.1f} ms; "
                  f"peak heap above idle {(peak - idle) / 1024:.1f} KB (goal < 16 KB)", flush=True)


if __name__ == "__main__":
    main()
