# Freeze the wearsafe application into a MicroPython firmware for this board:
# its modules then run from flash as bytecode, which leaves the GC heap to
# the sensor loop, TLS and the outbox. Build steps: README.md in this folder.
#
# Paths are relative to this file, as MicroPython's manifest tool takes them
# (it runs this file with this folder as the working directory).
# boot.py and main.py stay on the filesystem (`wearsafe flash --frozen` copies
# them and the device bundle); an app bundle installed by a signed update
# runs from apps/<slot>, which bootsel puts ahead of the frozen modules.
import os

# The port's own manifest: _boot.py, the filesystem set-up, and the newer
# umqtt.simple the firmware uses on the stock image.
include("$(PORT_DIR)/boards/manifest.py")

# Test-only modules under firmware/lib stay out of the image: the device never
# loads them; tests/target does (tests/test_manifest.py checks both).
#   wearsafe/crypto/aes192.py  AES-192 for the NIST CCM vectors. The device's
#       payload key is AES-256 (the keystore takes no other size), so
#       wearsafe.crypto.ccm never reaches its 24-byte-key branch on a device.
TEST_ONLY = ("wearsafe/crypto/aes192.py",)

# The application package and the boot selector (firmware/lib), but those.
LIB = "../../firmware/lib"
APP = sorted(os.path.relpath(os.path.join(folder, name), LIB).replace(os.sep, "/")
             for folder, _, names in os.walk(LIB) for name in names if name.endswith(".py"))
freeze(LIB, [path for path in APP if path not in TEST_ONLY])

# This board's hardware module, imported as `board`.
module("board.py")
