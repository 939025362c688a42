# Freeze the wearsafe application into a MicroPython firmware for this board:
# its modules then run from flash as bytecode, which leaves the GC heap to
# the sensor loop, TLS and the outbox. Build steps: README.md in this folder.
#
# Paths are relative to this file, as MicroPython's manifest tool takes them.
# boot.py and main.py stay on the filesystem (`wearsafe flash --frozen` copies
# them and the device bundle); an app bundle installed by a signed update
# runs from apps/<slot>, which bootsel puts ahead of the frozen modules.

# The port's own manifest: _boot.py, the filesystem set-up, and the newer
# umqtt.simple the firmware uses on the stock image.
include("$(PORT_DIR)/boards/manifest.py")

# The application package and the boot selector (firmware/lib).
freeze("../../firmware/lib")

# This board's hardware module, imported as `board`.
module("board.py")
