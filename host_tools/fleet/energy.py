"""The energy model: a device's counts (firmware/lib/wearsafe/energy.py, in its
status messages) as average current and days on a cell.

Each current names its source. Where a datasheet gives a range the model takes
the end that is cited as measured elsewhere, or the harsher one:

- ESP32 light sleep 0.8 mA; CPU on with the radio off (modem sleep) at 240 MHz,
  dual core, 30-68 mA, at 160 MHz 27-44 mA: ESP32 Series Datasheet v3.5, Table 6
  "Power Consumption by Power Modes". The lower bound is taken: ESP-IDF measured
  27.18 mA with the CPU on at 160 MHz (below), that table's lower bound there.
- Joined, idle in Wi-Fi modem sleep: 31.12 mA average at 160 MHz, DFS off, DTIM 1
  (ESP-IDF docs/en/api-guides/sleep-current/esp32_modem_sleep.inc), with the CPU
  on throughout (its minimum, 27.18 mA, is the CPU alone); at 240 MHz plus the
  datasheet's difference between its 240 and 160 MHz lower bounds (3 mA).
- Joining (scan, association, DHCP: the receiver listens throughout): 90 mA, the
  upper end of "Wi-Fi Rx and listening 80-90 mA"; transmitting 260 mA, the upper
  end of "Tx 13-21 dBm 160-260 mA" (ESP-WROOM-32 Datasheet, Table 5). Air time
  at 1 Mbit/s, 802.11b's lowest rate (IEEE 802.11-2020 clause 16), the rate a
  station at the edge of range falls back to: harsher than any real link.
- MAX30102 (Maxim 19-7740): supply current 600 uA in SpO2 mode; its two LEDs at
  7.2 mA (LEDx_PA 0x24, 0.2 mA a step), 411 us pulses (18-bit), 100 samples/s,
  as the firmware sets them (wearsafe/sensors/max30102.py).
- MAX30205 (Maxim 19-7594): supply current 600 uA, converting continuously.
- LIS3DH (ST DocID17530): 6 uA in normal mode at 25 Hz.
- The I2C bus at 400 kHz, 9 clocks a byte: the CPU is awake for each transfer,
  which the simulated bus takes no time for (BUS_BYTES_PER_S, below).
"""

from __future__ import annotations

from dataclasses import dataclass

LIGHT_SLEEP_MA = 0.8
CPU_MA = 30.0
JOINED_MA = 31.12 + (30.0 - 27.0)
JOINING_MA = 90.0
TX_MA = 260.0
RX_MA = 90.0
AIR_BITS_PER_S = 1_000_000
SENSORS_MA = 0.6 + 2 * 7.2 * 411e-6 * 100 + 0.6 + 0.006
# Per second: 25 PPG samples and 25 accelerometer samples of 6 bytes, the
# temperature's 2, and 10 polls of each FIFO's pointers (3 bytes plus the address
# and register bytes of two transfers, 4): 25*6 + 25*6 + 2 + 10*2*(3+4) = 442.
BUS_BYTES_PER_S = 442
BUS_AWAKE_SHARE = BUS_BYTES_PER_S * 9 / 400_000
COUNTS = ("uptime-ms", "awake-ms", "asleep-ms", "radio-off-ms", "joining-ms", "joined-ms",
          "handshakes", "tx-bytes", "rx-bytes")


@dataclass(frozen=True)
class Estimate:
    average_ma: float
    hours: float  # of counted time
    radio_on_share: float
    handshakes_per_hour: float

    def days(self, cell_mah: float) -> float:
        return cell_mah / self.average_ma / 24


def estimate(counts: dict[str, int]) -> Estimate:
    """The average current over the counted time (counts as status messages give them)."""
    up = counts["uptime-ms"]
    if up <= 0:
        raise ValueError("energy: no time counted")
    joining, joined = counts["joining-ms"], counts["joined-ms"]
    # with the radio off the CPU is awake or in light sleep; the time the simulator
    # took for itself (excluded from awake-ms) a board spends asleep
    awake_radio_off = min(counts["radio-off-ms"], max(0, counts["awake-ms"] - joining - joined))
    asleep = counts["radio-off-ms"] - awake_radio_off
    tx_s = counts["tx-bytes"] * 8 / AIR_BITS_PER_S
    rx_s = counts["rx-bytes"] * 8 / AIR_BITS_PER_S
    charge = (asleep * LIGHT_SLEEP_MA + awake_radio_off * CPU_MA + joining * JOINING_MA
              + joined * JOINED_MA + 1000 * tx_s * (TX_MA - JOINED_MA)
              + 1000 * rx_s * (RX_MA - JOINED_MA)
              + up * (SENSORS_MA + BUS_AWAKE_SHARE * (CPU_MA - LIGHT_SLEEP_MA)))  # mA ms
    return Estimate(charge / up, up / 3_600_000, (joining + joined) / up,
                    counts["handshakes"] * 3_600_000 / up)


def total(boots: list[dict[str, int]]) -> dict[str, int]:
    """The counts of several boots (each its last status), added up."""
    return {name: sum(boot.get(name, 0) for boot in boots) for name in COUNTS}
