"""What `wearsafe sim` shows while it runs, and its closing summary.

On a terminal: a live table (rich), redrawn each second, with each device's
version, latest vitals (as the ingest opened them), outbox, link state and
last message. Readings go to the screen only: when the output is a file or
a pipe (a CI log), the view prints counts and states every 10 s instead,
never a reading.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

COLUMNS = (("device", "left"), ("pseudonym", "left"), ("scenario", "left"),
           ("version", "left"), ("HR", "right"), ("SpO2", "right"), ("temp", "right"),
           ("steps", "right"), ("outbox", "right"), ("link", "left"), ("last seen", "left"))


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def _value(vitals: dict[str, float], quantity: str, fmt: str, scale: float = 1.0) -> str:
    v = vitals.get(quantity)
    return format(v * scale, fmt) if v is not None else "-"


def device_cells(d: Any, now: float) -> list[str]:
    seen = f"{now - d.last_seen:.0f} s ago" if d.last_seen is not None else "never"
    link = "radio off" if d.radio_off and d.link != "power off" else d.link
    return [d.name, d.device.device_id, d.scenario, d.version,
            _value(d.vitals, "heart-rate", ".0f"), _value(d.vitals, "spo2", ".0f", 100),
            _value(d.vitals, "body-temp", ".1f"), _value(d.vitals, "steps", ".0f"),
            str(d.pending), link, seen]


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
        for line in summary_lines(s):
            self.print(line)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The closing summary: "what: figures" lines, then one machine-readable line."""
    faults = s["faults"]
    lines = [
        f"fleet: {s['devices']} devices for {s['seconds']:.0f} s; restarts {s['restarts']}, "
        f"power cuts {s['power_cuts']}, crashed {len(s['crashed'])} "
        f"{' '.join(s['crashed'])}".rstrip(),
        f"faults: outage {faults['outage_s']:.0f} s, radio off "
        f"{','.join(faults['radio_off']) or '-'}, power cut "
        f"{','.join(faults['power_cut']) or '-'}",
        f"broker: {s.get('broker', '-')}",
        f"ingest: {s.get('ingest_workers', 1)} worker(s); redelivered copies discarded "
        f"{s['redelivered']}, rejected {s['rejected']}, quarantined {s['quarantined']}"
        if s["stored"] is not None else
        "ingest: none (--no-ingest): stored, lost and duplicates are your pipeline's to count",
        f"speed: {s['speed']}",
        f"network: {s['network']}; connections cut {s['network_drops']}, segments resent "
        f"{s['network_retransmissions']}",
        f"cpu: devices {s['cpu_devices_s']} s, broker {s['cpu_broker_s']} s, host tools "
        f"{s['cpu_host_s']} s = {s['cpu_cores_used']} cores on average; memory: devices "
        f"and broker {s['peak_rss_mb']:.0f} MB at peak, host tools {s['host_rss_mb']:.0f} MB",
        f"per device: {s['per_device']['cpu_percent']} % of a core, "
        f"{s['per_device']['pss_mb']} MB (its proportional share of memory, at peak)"
        if s.get("per_device") else "per device: -",
    ]
    window = (f"upload windows every {s['upload_interval_s']} s" if s.get("upload_interval_s")
              else "always connected")
    for name, e in (s.get("energy") or {}).items():
        if e is None:
            lines.append(f"energy {name}: no counts reported yet ({window})")
            continue
        alerts = ", ".join(f"{v:.1f}" for v in e["alert_latency_s"]) or "-"
        lines.append(f"energy {name}: {e['average_ma']:.2f} mA average over "
                     f"{e['counted_h'] * 60:.1f} min = {e['days']:.1f} days on "
                     f"{s['cell_mah']:.0f} mAh ({window}); radio on {e['radio_on_share']:.1%}, "
                     f"{e['handshakes_per_hour']:.1f} handshakes/h; alert latency s: {alerts}")
    lines.append(" ".join(f"{k}={'-' if s[k] is None else s[k]}"
                          for k in ("produced", "stored", "lost", "duplicates", "overflows",
                                    "p50_ms", "p99_ms")))
    return lines


class LiveView(PlainView):
    """For a terminal: the whole fleet as a table, redrawn in place each second (rich)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        super().__init__(out, every=1.0)
        self.notes: list[str] = []
        self.console = Console(file=out, highlight=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def note(self, message: str) -> None:
        self.notes = (self.notes + [message])[-4:]

    def show(self, sim: Any, duration: float | None) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self.live.update(self._frame(sim, duration, now), refresh=True)

    def _frame(self, sim: Any, duration: float | None, now: float) -> Group:
        rows = self.console.size.height - 6 - len(self.notes)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=fleet_line(sim, duration),
                      title_justify="left")
        for name, justify in COLUMNS:
            table.add_column(name, justify=justify, no_wrap=True)
        shown = sim.devices if len(sim.devices) <= rows else sim.devices[:max(rows - 1, 1)]
        for d in shown:
            table.add_row(*device_cells(d, now), style="red" if d.link != "up" else None)
        more = [Text(f"... and {len(sim.devices) - len(shown)} more")] \
            if len(shown) < len(sim.devices) else []
        return Group(table, *more, *(Text(n) for n in self.notes))

    def close(self) -> None:
        self.live.stop()

    def summary(self, s: dict[str, Any]) -> None:
        for message in self.notes:
            self.print(message)
        *human, machine = summary_lines(s)
        table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
        for line in human:
            what, _, figures = line.partition(": ")
            table.add_row(Text(what, style="bold"), figures)
        self.console.print(table)
        self.print(machine)  # last, plain: scripts and tests read it


def view_for(live: bool | None) -> PlainView:
    """The live table on a terminal, plain lines otherwise (or as asked)."""
    if live is None:
        live = sys.stdout.isatty()
    return LiveView() if live else PlainView()
