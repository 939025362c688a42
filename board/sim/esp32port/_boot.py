# Power-on of the modelled ESP32 (TEST EQUIPMENT, see time.py): what runs
# before boot.py on a board. The ESP-IDF bootloader picks the app slot
# (flashmodel: trial, rollback); the port's frozen _boot.py would mount the
# filesystem, which here is the working directory.
import flashmodel

flashmodel.running_label()
