"""`wearsafe report`: one static HTML page of what the ingest received.

Per device, one plot (inline SVG: heart rate, SpO2, body temperature and
steps over time, opened with the device's key) and its delivery figures;
for the fleet, the last simulation's summary when there is one. The page
is self-contained (no script, no font or style from elsewhere) so it opens
offline. It holds readings: it is written 0600, and each device it shows is
recorded in the audit log, as an export is.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from host_tools.fleet.export import readings
from host_tools.fleet.server import Server

# quantity -> (label, unit shown, scale, colour)
PANELS = {
    "heart-rate": ("heart rate", "/min", 1.0, "#d62728"),
    "spo2": ("SpO2", "%", 100.0, "#1f77b4"),
    "body-temp": ("body temperature", "°C", 1.0, "#ff7f0e"),
    "steps": ("steps", "", 1.0, "#2ca02c"),
}
WIDTH, PANEL_H, LEFT, GAP = 760, 64, 150, 14

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f4f4f4; }
section.device { margin: 2em 0; }
svg.plot text { font: 11px sans-serif; fill: #444; }
"""


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def plot(series: dict[str, list[tuple[float, float]]]) -> str:
    """One SVG: a panel per quantity, all on the same time axis."""
    times = [t for points in series.values() for t, _ in points]
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(t1 - t0, 1.0)
    parts = []
    for i, (quantity, (label, unit, scale, colour)) in enumerate(PANELS.items()):
        top = i * (PANEL_H + GAP)
        points = [(t, v * scale) for t, v in series.get(quantity, [])]
        parts.append(f'<text x="0" y="{top + PANEL_H / 2 + 4}">{html.escape(label)}'
                     f'{" (" + unit + ")" if unit else ""}</text>')
        parts.append(f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT}" height="{PANEL_H}" '
                     'fill="none" stroke="#ddd"/>')
        if not points:
            parts.append(f'<text x="{LEFT + 8}" y="{top + PANEL_H / 2 + 4}">no readings'
                         '</text>')
            continue
        low, high = min(v for _, v in points), max(v for _, v in points)
        pad = max((high - low) * 0.1, 0.5)
        low, high = low - pad, high + pad
        xy = " ".join(f"{LEFT + (t - t0) / span * (WIDTH - LEFT):.1f},"
                      f"{top + (high - v) / (high - low) * PANEL_H:.1f}" for t, v in points)
        parts.append(f'<polyline class="{quantity}" points="{xy}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{top + 10}" text-anchor="end">{_fmt(high)}'
                     f'</text><text x="{LEFT - 4}" y="{top + PANEL_H}" text-anchor="end">'
                     f'{_fmt(low)}</text>')
    height = len(PANELS) * (PANEL_H + GAP)
    axis = (f'<text x="{LEFT}" y="{height + 2}">{_clock(t0)}</text>'
            f'<text x="{WIDTH}" y="{height + 2}" text-anchor="end">{_clock(t1)} UTC</text>')
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH + 10}" '
            f'height="{height + 10}" viewBox="0 0 {WIDTH + 10} {height + 10}">'
            + "".join(parts) + axis + "</svg>")


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}"
                               "</td></tr>" for k, v in rows) + "</table>"


def device_section(server: Server, device_id: str) -> str:
    rows = readings(server, device_id)
    server.audit("report", device_id, readings=len(rows))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in sorted(rows, key=lambda r: r["time"]):
        series.setdefault(row["quantity"], []).append((row["time"], row["value"]))
    with server.messages_db() as db:
        count, first, last = db.execute(
            "SELECT count(*), min(received_ms), max(received_ms) FROM messages "
            "WHERE device_id = ?", (device_id,)).fetchone()
    figures = [("messages stored", count), ("readings", len(rows)),
               ("first received", _clock(first / 1000) if first else "-"),
               ("last received", _clock(last / 1000) if last else "-")]
    return (f'<section class="device"><h2>device {html.escape(device_id)}</h2>'
            f"{_table(figures)}{plot(series)}</section>")


def fleet_section(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "<p>No simulation summary: delivery figures come from `wearsafe sim`.</p>"
    keys = ("devices", "seconds", "produced", "stored", "lost", "duplicates", "p50_ms",
            "p99_ms", "redelivered", "rejected", "restarts", "power_cuts", "cpu_cores_used",
            "peak_rss_mb")
    return "<h2>Fleet delivery (last simulation)</h2>" + _table(
        [(k, summary[k]) for k in keys if k in summary])


def write_report(server: Server, out: Path, summary_path: Path | None) -> int:
    """Write the page; the number of devices in it."""
    summary = json.loads(summary_path.read_text()) if summary_path and \
        summary_path.is_file() else None
    device_ids = sorted({device_id for device_id, _ in server.keys().values()})
    body = "".join(device_section(server, d) for d in device_ids) or \
        "<p>No provisioned devices here.</p>"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>wearsafe report</title><style>{STYLE}</style></head><body>"
            f"<h1>wearsafe report</h1><p>{len(device_ids)} devices; made "
            f"{_clock(time.time())} UTC from {html.escape(str(server.directory))}</p>"
            f"{fleet_section(summary)}{body}</body></html>\n")
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(page)
    os.replace(tmp, out)
    return len(device_ids)
