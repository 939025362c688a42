"""What `wearsafe sim` shows while it runs, and its closing summary.

On a terminal: a live table, redrawn each second, with each device's
version, latest vitals (as the ingest opened them), outbox, link state and
last message. Readings go to the screen only: when the output is a file or
a pipe (a CI log), the view prints counts and states every 10 s instead,
never a reading.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

HEADER = (f"{'device':<10} {'pseudonym':<16} {'scenario':<12} {'version':<8} {'HR':>4} "
          f"{'SpO2':>5} {'temp':>5} {'steps':>6} {'outbox':>6}  {'link':<10} last seen")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def _value(vitals: dict[str, float], quantity: str, fmt: str, scale: float = 1.0) -> str:
    v = vitals.get(quantity)
    return format(v * scale, fmt) if v is not None else "-"


def device_row(d: Any, now: float) -> str:
    seen = f"{now - d.last_seen:.0f} s ago" if d.last_seen is not None else "never"
    link = "radio off" if d.radio_off and d.link != "power off" else d.link
    return (f"{d.name:<10} {d.device.device_id:<16} {d.scenario:<12} {d.version:<8} "
            f"{_value(d.vitals, 'heart-rate', '.0f'):>4} {_value(d.vitals, 'spo2', '.0f', 100):>5} "
            f"{_value(d.vitals, 'body-temp', '.1f'):>5} {_value(d.vitals, 'steps', '.0f'):>6} "
            f"{d.pending:>6}  {link:<10} {seen}")


def fleet_line(sim: Any, duration: float | None) -> str:
    total = f" of {_clock(duration)}" if duration else " (Ctrl-C stops)"
    up = sum(1 for d in sim.devices if d.link == "up")
    stored = sum(len(d.stored_at) for d in sim.devices)
    pending = sum(d.pending for d in sim.devices)
    broker = "up" if sim.broker_up else "DOWN"
    return (f"wearsafe sim {_clock(sim.elapsed())}{total}: {len(sim.devices)} devices, "
            f"{up} linked, broker {broker}, stored {stored}, in outboxes {pending}")


class PlainView:
    """For logs: states and counts every 10 s, never a reading."""

    def __init__(self, out: TextIO = sys.stdout, every: float = 10.0) -> None:
        self.out = out
        self.every = every
        self._next = 0.0

    def print(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def note(self, message: str) -> None:
        self.print(message)

    def show(self, sim: Any, duration: float | None) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            self.note(fleet_line(sim, duration))

    def close(self) -> None:
        pass

    def summary(self, s: dict[str, Any]) -> None:
        faults = s["faults"]
        lines = [
            f"fleet: {s['devices']} devices for {s['seconds']:.0f} s; restarts {s['restarts']}, "
            f"power cuts {s['power_cuts']}, crashed {len(s['crashed'])} "
            f"{' '.join(s['crashed'])}".rstrip(),
            f"faults: outage {faults['outage_s']:.0f} s, radio off "
            f"{','.join(faults['radio_off']) or '-'}, power cut "
            f"{','.join(faults['power_cut']) or '-'}",
            f"ingest: redelivered copies discarded {s['redelivered']}, rejected {s['rejected']}, "
            f"quarantined {s['quarantined']}",
            f"cpu: devices {s['cpu_devices_s']} s, broker {s['cpu_broker_s']} s, host tools "
            f"{s['cpu_host_s']} s = {s['cpu_cores_used']} cores on average; memory: devices "
            f"and broker {s['peak_rss_mb']:.0f} MB at peak, host tools {s['host_rss_mb']:.0f} MB",
            " ".join(f"{k}={s[k]}" for k in ("produced", "stored", "lost", "duplicates",
                                             "p50_ms", "p99_ms")),
        ]
        for line in lines:
            self.print(line)


class LiveView(PlainView):
    """For a terminal: the whole fleet redrawn in place each second."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        super().__init__(out, every=1.0)
        self.notes: list[str] = []
        self.out.write("\x1b[?25l")  # hide the cursor while redrawing

    def note(self, message: str) -> None:
        self.notes = (self.notes + [message])[-4:]

    def show(self, sim: Any, duration: float | None) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        rows = shutil.get_terminal_size((120, 40)).lines - 4 - len(self.notes)
        lines = [fleet_line(sim, duration), HEADER]
        shown = sim.devices if len(sim.devices) <= rows else sim.devices[:rows - 1]
        lines += [device_row(d, now) for d in shown]
        if len(shown) < len(sim.devices):
            lines.append(f"... and {len(sim.devices) - len(shown)} more")
        lines += self.notes
        self.out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\x1b[?25h")
        self.out.flush()

    def summary(self, s: dict[str, Any]) -> None:
        for message in self.notes:
            self.print(message)
        super().summary(s)


def view_for(live: bool | None) -> PlainView:
    """The live table on a terminal, plain lines otherwise (or as asked)."""
    if live is None:
        live = sys.stdout.isatty()
    return LiveView() if live else PlainView()
