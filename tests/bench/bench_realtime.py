"""The sensor loop at ESP32 speed (issue 15): one simulated device, its process in
the CPU quota that makes MicroPython run as on an ESP32 at 240 MHz, behind
rtt=300ms,loss=2%,rate=100kbit, goes through what starves a synchronous loop:
a reconnect with a full mutual-TLS handshake, a backlog of 20 messages drained
after a spell without radio, and an OTA download of a signed 1 MiB firmware with its
verification (SHA-256 streamed, Ed25519 at the end). For each, the longest gap
between two polls of the sensor FIFOs and the FIFO overflows, against what the
FIFOs hold (32 samples at 25/s: 1.28 s). Read from the device's own log: each
sealed batch reports its longest stall (stall-ms) and the overflows since boot
(ppg-lost, accel-overrun), so a phase's figures are those of the batches
(BATCH_S each) that overlap it.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.sim.fleet import Faults, SimDevice, Simulation  # noqa: E402
from host_tools.sim.live_view import PlainView  # noqa: E402
from host_tools.updates import images, release  # noqa: E402
from tests.esp_images import app_image  # noqa: E402

RATE_KBIT = 100
NETWORK = f"rtt=300ms,loss=2%,rate={RATE_KBIT}kbit"
BATCH_S = 2
STEADY_S = 30  # connected, before the first step
BACKLOG = 20  # messages sealed while the radio is off
FIFO_MS = 1280  # MAX30102 and LIS3DH: 32 samples at 25/s (firmware/lib/wearsafe/sensing.py)
OTA_BYTES = 1 << 20
WAIT_S = 120  # for any one step but the update, at ESP32 speed
OTA_WAIT_S = 900  # 1 MiB at 100 kbit/s: 84 s at least


class Script(Simulation):
    """The run: each step waits for the device's log to show what it caused; marks
    are where each step began in that log (its line count then)."""

    marks: dict[str, int]

    def _loop(self, fs: Path, duration: float | None, view: Any) -> float:
        device, link = self.devices[0], self.links[0]
        self.marks = {}
        self._until(fs, lambda: "link-up" in _events(device))
        self._settle(fs, STEADY_S)
        self._mark(device, "reconnect")
        link.drop_now()
        self._until(fs, lambda: "link-up" in _events(device, self.marks["reconnect"]))
        self._settle(fs, 6)
        self._mark(device, "drain")
        device.set_radio(False)
        self._settle(fs, BACKLOG * BATCH_S + 1)
        device.set_radio(True)
        self._until(fs, lambda: device.pending <= 1)
        self._settle(fs, 4)
        self._mark(device, "ota")
        self._publish_update()
        self._until(fs, lambda: device.restarts >= 1, OTA_WAIT_S)
        return time.monotonic()

    def _mark(self, device: SimDevice, name: str) -> None:
        self.marks[name] = len(_lines(device))
        print(f"  {self.elapsed():5.0f} s: {name}", flush=True)

    def _publish_update(self) -> None:
        """A signed firmware of 1 MiB (an ESP app image; MicroPython's is 1.6 MiB)."""
        assert self.broker is not None
        key = images.signing_key_for(self.server, self.state / "signing" / "update-key.pem")
        raw = self.state / "micropython.bin"
        raw.write_bytes(app_image(code=random.Random(15).randbytes(OTA_BYTES)))
        image = images.sign(raw, self.state / "firmware.img", key, "9.9.9", 9, self.board,
                            "firmware")
        release.publish_image(self.server, self.broker.port, image, self.board)

    def _until(self, fs: Path, done: Callable[[], Any], wait_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + wait_s
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_realtime: the device did not get there in {wait_s} s; "
                                 f"see {self.devices[0].log_path}")
            self._tick(fs)

    def _settle(self, fs: Path, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._tick(fs)

    def _tick(self, fs: Path) -> None:
        for d in self.devices:
            d.supervise(fs, time.monotonic())
        time.sleep(0.25)


def _lines(device: SimDevice) -> list[list[str]]:
    try:
        text = device.log_path.read_text()
    except FileNotFoundError:
        return []
    return [words for words in map(str.split, text.splitlines()) if len(words) >= 3]


def _events(device: SimDevice, after: int = 0) -> list[str]:
    return [words[2] for words in _lines(device)[after:]]


def _first(lines: list[list[str]], after: int, event: str,
           test: Callable[[list[str]], bool] = lambda w: True) -> int:
    """The device time (ms) of the first `event` line at or after line `after`."""
    for words in lines[after:]:
        if words[2] == event and test(words):
            return int(words[0])
    raise SystemExit(f"bench_realtime: no {event} in the device's log after line {after}")


def _field(words: list[str], name: str) -> int:
    return int(words[words.index(name) + 1])


def phase(lines: list[list[str]], start: int, end: int) -> tuple[int, int, int]:
    """(longest stall ms, PPG samples lost, accelerometer overruns) of the batches whose
    time overlaps [start, end] (device ms, in the first boot's log)."""
    batches = []  # (from, to, stall, lost, overruns)
    before = (0, 0)
    first_boot = lines[:next((i for i, w in enumerate(lines) if w[2] == "boot" and i), None)]
    previous = 0
    for words in first_boot:
        if words[2] == "sealed" and "stall-ms" in words:
            t = int(words[0])
            counts = (_field(words, "ppg-lost"), _field(words, "accel-overrun"))
            if t <= start:
                before = counts
            batches.append((previous, t, _field(words, "stall-ms"), *counts))
            previous = t
    inside = [b for b in batches if b[1] > start and b[0] < end]
    if not inside:
        raise SystemExit(f"bench_realtime: no sealed batch between {start} and {end} ms")
    last = inside[-1]
    return max(b[2] for b in inside), last[3] - before[0], last[4] - before[1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wearsafe-bench-realtime-") as tmp:
        if len(sys.argv) > 1:  # a directory to keep the run's state and logs in
            tmp = sys.argv[1]
        view = PlainView(open("/dev/null", "w"))  # noqa: SIM115 - the run's own notes
        sim = Script(Path(tmp) / "state", 1, "walk", BATCH_S, Faults(), speed="esp32",
                     network=NETWORK)
        sim.run(None, view)
        device = sim.devices[0]
        lines = _lines(device)
        marks = sim.marks
        up = _first(lines, 0, "link-up")
        down = _first(lines, marks["reconnect"], "link-down")
        back = _first(lines, marks["reconnect"], "link-up")
        offline = _first(lines, marks["drain"], "link-down")
        again = _first(lines, marks["drain"], "link-up")
        drained = _first(lines, marks["drain"], "sealed",
                         lambda w: int(w[0]) > again and "stall-ms" in w
                         and _field(w, "outbox") <= 2)
        fetching = _first(lines, marks["ota"], "update-fetching")
        installed = _first(lines, marks["ota"], "update-installed")
        backlog = _field(next(w for w in lines[marks["drain"]:]
                              if w[2] == "link-up" and int(w[0]) == again), "outbox")
        assert sim.calibration is not None
        print(f"speed: {sim.calibration.line()}")
        print(f"network: {NETWORK}; batches of {BATCH_S} s; the FIFOs hold {FIFO_MS} ms")
        print(f"{'phase':44} {'took':>8} {'longest stall':>14} {'PPG lost':>9} "
              f"{'accel overruns':>15}")
        rows = [("steady state, connected", up + 2000, down - BATCH_S * 1000),
                ("reconnect with TLS handshake", down, back + 1000),
                (f"drain of a {backlog}-message backlog", again, drained),
                (f"OTA of {OTA_BYTES >> 10} KiB with verification", fetching, installed)]
        for name, start, end in rows:
            stall, lost, overruns = phase(lines, start, end)
            print(f"{name:44} {(end - start) / 1000:7.1f}s {stall:11d} ms {lost:9d} "
                  f"{overruns:15d}  ({stall / FIFO_MS:.2f} of the FIFO)")
        print(f"radio off for {(again - offline) / 1000:.0f} s before the drain")
        verifying = _first(lines, marks["ota"], "update-installing")
        print(f"the update came in at {OTA_BYTES * 8 / (verifying - fetching):.1f} kbit/s of "
              f"the link's {RATE_KBIT}; checking and committing it took "
              f"{(installed - verifying) / 1000:.1f} s")


if __name__ == "__main__":
    main()
