"""Device crypto benchmarks on the MicroPython unix port, measured in one run each.

- AES-CCM on 1 KB, as a ratio to the two raw cryptolib AES passes over 1 KB
  (CBC for the MAC, ECB for the keystream) that it cannot avoid; goal <= 3.
- Sealing a 60-reading batch: time, and bytes per reading including all
  COSE overhead (goal <= 10), next to the same readings sent as one plain
  JSON object each.
- Ed25519 verify: time, and the peak GC heap above idle (goal < 16 KB),
  found as the smallest heap each step completes in.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.devicebench import figures, min_heap  # noqa: E402

CCM = """
import time, cryptolib
from wearsafe.crypto import ccm
key, nonce, data = bytes(32), bytes(13), bytes(1024)
out = bytearray(1024)
def best(fn, n=200):
    b = 1 << 30
    for _ in range(n):
        t = time.ticks_us(); fn(); b = min(b, time.ticks_diff(time.ticks_us(), t))
    return b
raw = best(lambda: (cryptolib.aes(key, 2, bytes(16)).encrypt(data, out),
                    cryptolib.aes(key, 1).encrypt(data, out)))
seal = best(lambda: ccm.encrypt(key, nonce, data))
print("raw_us=%d" % raw, "ccm_us=%d" % seal)
"""

BATCH = """
import time, json
from wearsafe import cose, senml
series = {"heart-rate": [(4 * i, 60 + i % 20) for i in range(15)],
          "spo2": [(4 * i, 0.96875) for i in range(15)],
          "body-temp": [(4 * i, 36.5 + (i % 4) / 256) for i in range(15)],
          "steps": [(4 * i, 7 * i) for i in range(15)]}
key, iv = bytes(32), bytes(13)
aad = cose.external_aad("a1b2c3d4e5f60718", "devices/a1b2c3d4e5f60718/up")
best = 1 << 30
for i in range(50):
    t = time.ticks_us()
    pack = senml.encode_pack("a1b2c3d4e5f60718", 1700000000, series)
    sealed = cose.encrypt0(key, iv, b"k1", 123456 + i, pack, aad)
    best = min(best, time.ticks_diff(time.ticks_us(), t))
plain = sum(len(json.dumps({"n": "a1b2c3d4e5f60718/" + q, "u": senml.UNITS[q], "v": v,
                            "t": 1700000000 + t})) for q in series for t, v in series[q])
print("seal_us=%d" % best, "sealed_bytes=%d" % len(sealed), "senml_bytes=%d" % len(pack),
      "json_bytes=%d" % plain)
"""

VERIFY_SETUP = """
from binascii import unhexlify
from wearsafe.crypto import ed25519
import gc
pk = unhexlify("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
sig = unhexlify("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
gc.collect()
"""
VERIFY_RUN = "assert ed25519.verify(pk, b'\\x72', sig)\n"
VERIFY_TIME = VERIFY_SETUP + """
import time
best = 1 << 30
for _ in range(20):
    t = time.ticks_us(); ed25519.verify(pk, b"\\x72", sig)
    best = min(best, time.ticks_diff(time.ticks_us(), t))
print("verify_us=%d" % best)
"""


def main() -> None:
    ccm = figures(CCM)
    print(f"AES-CCM 1 KB: {ccm['ccm_us']:.0f} us; two raw AES passes: {ccm['raw_us']:.0f} us; "
          f"ratio {ccm['ccm_us'] / ccm['raw_us']:.1f} (goal <= 3)")
    b = figures(BATCH)
    print(f"seal 60 readings: {b['seal_us'] / 1000:.2f} ms; {b['sealed_bytes']:.0f} bytes sealed "
          f"= {b['sealed_bytes'] / 60:.1f} bytes/reading (goal <= 10; SenML alone "
          f"{b['senml_bytes'] / 60:.1f}); plain JSON one object each: "
          f"{b['json_bytes'] / 60:.1f} bytes/reading ({b['json_bytes'] / b['sealed_bytes']:.1f}x)")
    v = figures(VERIFY_TIME)
    idle = min_heap(VERIFY_SETUP)
    peak = min_heap(VERIFY_SETUP + VERIFY_RUN)
    print(f"Ed25519 verify: {v['verify_us'] / 1000:.1f} ms; peak GC heap above idle "
          f"{(peak - idle) / 1024:.1f} KB (idle {idle / 1024:.1f} KB, verifying "
          f"{peak / 1024:.1f} KB; goal < 16 KB)")


if __name__ == "__main__":
    main()
