"""Simulated wearables end to end: a real Mosquitto with TLS, the ingest on
SQLite, and N devices, each running the firmware build for board/sim on the
MicroPython unix port with its own scenario. With `broker`, the devices (and
the ingest, unless it is left out) use a broker the simulation did not start:
a staging Mosquitto configured by `wearsafe broker-config` for the same
server directory, or a cloud endpoint that trusts the fleet CA.

All state lives under one directory:

    server/            CA, broker, key vault, message store, audit log (host_tools.fleet.server)
    signing/           the update-signing key the devices trust (host_tools.updates.images)
    device-N/          device N's bundle, NVS, flash and outbox (0700); kept between runs
    logs/device-N.log  what device N printed: sizes, counts and states, never a reading
    ingest.log
    summary.json       the last run's delivery figures (`wearsafe report` shows them)

Delivery is judged by partial IV: every message a device sealed before the
end of the run must be stored once (lost = sealed and never stored), and no
reading may be stored twice (duplicates = readings of one device at one time
stored more than once, counted from the opened messages, not from the
store's own uniqueness). Latency runs from the device's "sealed" log line to
the ingest's commit, both on the host's clock.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.device.build import build
from host_tools.device.provision import (
    Device,
    certified_broker_host,
    private_files,
    provision_sim_device,
    sim_env,
)
from host_tools.fleet import energy
from host_tools.fleet.broker import INGEST_PROCESSES, Broker, parse_address
from host_tools.fleet.ingest import Ingest
from host_tools.fleet.payloads import PayloadError, decode_senml
from host_tools.fleet.pki import private_dir
from host_tools.fleet.server import Server
from host_tools.paths import ToolError, micropython
from host_tools.processes import die_with_parent, sigterm_as_ctrl_c, stop_group
from host_tools.sim.network import LinkEmulator, parse_network
from host_tools.testing.esp32_model import BOARD as ESP32_BOARD
from host_tools.testing.esp32_model import power_on, provision_model_device
from host_tools.testing.esp32_speed import Calibration, CpuQuota, calibrate
from host_tools.testing.target import heap_bytes
from host_tools.updates.images import signing_key_for

# The whole application with every module loaded as .mpy into RAM, on the
# 64-bit unix port (objects up to twice their ESP32 size). On the ESP32 the
# modules are frozen into flash instead (board/esp32_devkitc/manifest.py).
SIM_HEAP = "256K"
RESET_EXIT = 75  # board/sim: the device asked for a reset
# Scenarios handed out in turn when no single one is asked for.
MIX = ("rest", "walk", "fever", "run", "desaturation", "rest", "walk", "off-wrist", "rest",
       "chip-missing")
VITALS = ("heart-rate", "spo2", "body-temp", "steps")
GAPS = ("ppg-lost", "accel-overrun")  # what the sensor FIFOs lost, as the packs report it
POWER_OFF_S = 2.0  # a power cut keeps the device off this long
DRAIN_S = 90.0  # after the run: time for what was sealed to arrive (backoff caps at 60 s)
DEFAULT_FAULT_S = 30.0


@dataclass
class Faults:
    """What to break, and when: one window in the middle of the run."""

    outage_s: float = 0.0  # the broker is down this long
    radio_off: list[str] = field(default_factory=list)  # these devices lose their radio
    power_cut: list[str] = field(default_factory=list)  # these lose power as it opens

    def window(self, duration: float | None) -> tuple[float, float]:
        """(start, end) in seconds from the start of the run."""
        length = self.outage_s or DEFAULT_FAULT_S
        start = max(5.0, (duration - length) / 2) if duration else DEFAULT_FAULT_S
        return start, start + length

    def any(self) -> bool:
        return bool(self.outage_s or self.radio_off or self.power_cut)


@dataclass
class SimDevice:
    """One simulated wearable, as the host sees it: its log, its messages."""

    index: int
    device: Device
    scenario: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    version: str = "-"
    link: str = "starting"
    vitals: dict[str, float] = field(default_factory=dict)
    last_seen: float | None = None  # host time of the last message stored
    # piv -> host time; written by the log reader and the ingest threads, so
    # read through copies (dict.copy() is atomic under the GIL)
    sealed_at: dict[int, float] = field(default_factory=dict)
    stored_at: dict[int, float] = field(default_factory=dict)
    readings: set[tuple[str, float]] = field(default_factory=set)
    duplicates: int = 0
    overflows: int = 0  # FIFO overflows its packs reported
    quota: CpuQuota | None = None  # at ESP32 speed: its process's share of a core
    throttled: bool = False  # its process was seen in the quota's group
    restarts: int = 0
    power_cuts: int = 0
    powered_off_until: float | None = None
    radio_off: bool = False
    exit_code: int | None = None  # set when it ended by itself, not by a reset
    cpu_s: float = 0.0  # of processes already ended
    energy_boots: list[dict[str, int]] = field(default_factory=list)  # last counts per boot
    alert_latencies_s: list[float] = field(default_factory=list)  # alert time to stored
    energy_at: float = 0.0  # host time its last energy counts were stored
    _cpu_now: float = 0.0
    _reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"device-{self.index}"

    @property
    def pending(self) -> int:
        """Sealed in this run and not stored yet: the outbox, as the host sees it."""
        return len(self.sealed_at.copy().keys() - self.stored_at.copy().keys())

    def start(self, fs: Path) -> None:
        run = {"WEARSAFE_SCENARIO": self.scenario, "WEARSAFE_SIM_SPEED": "1",
               "WEARSAFE_SIM_SEED": str(self.index)}
        state = self.device.state
        if fs.parent.name == "sim":
            # cwd: the device's filesystem root, as on a board; boot.py, then main.py.
            how = {"args": [micropython(), "-X", f"heapsize={SIM_HEAP}", "-c", "import boot, main"],
                   "cwd": fs, "env": sim_env(fs, state, **run)}
        else:  # board/esp32_devkitc over the esp32-port model: its root is its state
            how = power_on(fs, state, "import boot, main", heap_bytes(SIM_HEAP), **run)
        if self.quota:
            how["env"] = self.quota.device_env(how["env"])
        self.process = subprocess.Popen(
            **how, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=functools.partial(_device_process, self.quota))
        if self.quota:
            self.throttled = self.quota.holds(self.process.pid)
        self.link = "starting"
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with open(self.log_path, "a", buffering=1) as log:  # line by line: tail -f shows it
            for raw in process.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                self._note(line.split())

    def _note(self, words: list[str]) -> None:
        """Follow the device's state from its log line: '<ms> <level> <event> ...'."""
        if len(words) < 3:
            return
        event = words[2]
        if event == "boot" and len(words) > 4:
            self.version = words[4]
        elif event == "sealed" and "piv" in words:
            self.sealed_at[int(words[words.index("piv") + 1])] = time.monotonic()
        elif event == "link-up":
            self.link = "up"
        elif event == "link-down":
            self.link = "down"

    def on_stored(self, piv: int, plaintext: bytes) -> None:
        """The ingest committed one of this device's messages (opened once, there)."""
        self.stored_at[piv] = self.last_seen = time.monotonic()
        try:
            records = decode_senml(plaintext)
        except PayloadError:
            return  # the ingest checked it; a status message has no readings anyway
        counts = {}
        for record in records:
            quantity = record["n"].rsplit("/", 1)[-1]
            if quantity in energy.COUNTS:
                counts[quantity] = int(record["v"])
            elif quantity == "alert":  # from the second the vitals crossed (device clock)
                self.alert_latencies_s.append(time.time() - record["t"])
            if quantity in GAPS:
                self.overflows += int(record["v"])
            if quantity not in VITALS:
                continue
            if (quantity, record["t"]) in self.readings:
                self.duplicates += 1
            self.readings.add((quantity, record["t"]))
            self.vitals[quantity] = record["v"]
        if counts:  # since boot: a smaller uptime is the next boot's
            self.energy_at = time.monotonic()
            if not self.energy_boots or counts["uptime-ms"] < self.energy_boots[-1]["uptime-ms"]:
                self.energy_boots.append(counts)
            else:
                self.energy_boots[-1] = counts

    def energy(self, cell_mah: float) -> dict[str, Any] | None:
        """What its energy counts come to (None before its first report)."""
        if not self.energy_boots:
            return None
        e = energy.estimate(energy.total(self.energy_boots))
        return {"average_ma": round(e.average_ma, 2), "days": round(e.days(cell_mah), 2),
                "radio_on_share": round(e.radio_on_share, 3),
                "handshakes_per_hour": round(e.handshakes_per_hour, 1),
                "counted_h": round(e.hours, 3),
                "alert_latency_s": [round(s, 1) for s in self.alert_latencies_s]}

    def supervise(self, fs: Path, now: float) -> None:
        """Power it on again after a reset or a power cut; note a crash."""
        if self.powered_off_until is not None:
            if now >= self.powered_off_until:
                self.powered_off_until = None
                self.start(fs)
            return
        if self.process is None or self.process.poll() is None:
            self._cpu_now = _cpu_seconds(self.process.pid) if self.process else 0.0
            return
        self.cpu_s += self._cpu_now
        self._cpu_now = 0.0
        if self.process.returncode == RESET_EXIT:
            self.restarts += 1
            self.start(fs)
        elif self.exit_code is None:
            self.exit_code = self.process.returncode
            self.link = f"exit {self.exit_code}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        if self.process and self.process.poll() is None:
            return self.cpu_s + _cpu_seconds(self.process.pid)
        return self.cpu_s

    def cut_power(self) -> None:
        if self.process and self.process.poll() is None:
            self.cpu_s += _cpu_seconds(self.process.pid)
            self._cpu_now = 0.0
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.power_cuts += 1
        self.powered_off_until = time.monotonic() + POWER_OFF_S
        self.link = "power off"

    def set_charging(self, on: bool) -> None:
        flag = self.device.state / "charging"  # board/sim: on the charger, always connected
        if on:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def set_radio(self, on: bool) -> None:
        self.radio_off = not on
        flag = self.device.state / "radio-off"
        if on:
            flag.unlink(missing_ok=True)
        else:
            flag.touch()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.cpu_s += _cpu_seconds(self.process.pid)
            stop_group(self.process)
        if self._reader:
            self._reader.join(5)
        if self.radio_off:
            self.set_radio(True)
        self.set_charging(False)
        if self.quota:
            self.quota.remove()

    def latencies_ms(self, sealed_before: float) -> list[float]:
        stored = self.stored_at.copy()
        return [(stored[piv] - t) * 1000 for piv, t in self.sealed_at.copy().items()
                if t <= sealed_before and piv in stored]

    def produced(self, before: float) -> set[int]:
        return {piv for piv, t in self.sealed_at.copy().items() if t <= before}

    def lost(self, before: float) -> set[int]:
        return self.produced(before) - self.stored_at.copy().keys()


def _device_process(quota: CpuQuota | None = None) -> None:
    """In the child: private files, it dies with the simulator, and at ESP32 speed it
    runs in its CPU quota."""
    private_files()
    die_with_parent()
    if quota:
        quota.enter()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _memory_mb(pid: int) -> tuple[float, float]:
    """A process's resident memory (RSS) and its proportional share of it (PSS: each
    page shared by n processes counts 1/n, what one more device really costs)."""
    found = {"Rss": 0.0, "Pss": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in found:
                found[name] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["Rss"], found["Pss"]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def find_device(devices: list[SimDevice], name: str) -> SimDevice:
    """A device named by its number, its name (device-3) or its pseudonym."""
    for d in devices:
        if name in (str(d.index), d.name, d.device.device_id):
            return d
    raise ToolError(f"no simulated device {name!r}: give a number from 1 to {len(devices)}, "
                    "a name like device-1, or a pseudonym")


class Simulation:
    """The broker, the ingest and the devices of one run; everything stops on exit."""

    def __init__(self, state: Path, devices: int, scenario: str | None, batch_seconds: int,
                 faults: Faults, board: str = "sim", speed: str = "desktop",
                 network: str | None = None, upload_interval: int = 0,
                 cell_mah: float = 400.0, broker: str | None = None,
                 ingest: bool = True, db: str | None = None, ingest_workers: int = 1) -> None:
        self.external = parse_address(broker) if broker else None  # (host, port) not ours
        if self.external and faults.outage_s:
            raise ToolError("--outage stops and restarts the simulation's own broker: with "
                            "--broker, take your broker down yourself during the run")
        if not ingest and not self.external:
            raise ToolError("--no-ingest is for a broker whose messages your own pipeline "
                            "consumes: give it with --broker HOST:PORT")
        self.with_ingest = ingest
        if not 1 <= ingest_workers <= INGEST_PROCESSES:
            raise ToolError(f"--ingest-workers {ingest_workers}: give 1 to {INGEST_PROCESSES}")
        self.ingest_workers = ingest_workers
        if upload_interval < 0:
            raise ToolError("--upload-interval must be 0 (always connected) or more seconds")
        self.upload_interval = upload_interval
        self.cell_mah = cell_mah
        self.network = parse_network(network) if network is not None else None
        self.links: list[LinkEmulator] = []  # one relay per device with --network
        if speed not in ("desktop", "esp32"):
            raise ToolError(f"--speed {speed!r}: desktop or esp32")
        # measured before anything starts: a quota that cannot be had stops the run here
        self.calibration: Calibration | None = calibrate(runs=3) if speed == "esp32" else None
        if self.calibration:
            self.calibration.quota(f"wearsafe-{os.getpid()}-probe").remove()
        if board not in ("sim", ESP32_BOARD):
            raise ToolError(f"--board must be sim or {ESP32_BOARD} (over the esp32-port model)")
        self.board = board
        if devices < 1:
            raise ToolError("--devices must be at least 1")
        self.state = private_dir(state)
        self.count = devices
        self.scenario = scenario
        self.batch_seconds = batch_seconds
        self.faults = faults
        self.server = Server(state / "server").init(db)
        self.server.mark_simulator()  # its update key is a throwaway: see provision()
        # The host name devices check the broker's certificate for; through --network's
        # relays they reach it on localhost (which broker-config's certificates name).
        self.broker_host = "localhost"
        if self.external:
            self.broker_host = certified_broker_host(
                self.server, "localhost" if self.network else self.external[0])
        self.devices: list[SimDevice] = []
        self.by_id: dict[str, SimDevice] = {}  # pseudonym -> device, for the ingest
        self.broker: Broker | None = None
        self.broker_up = False
        self.stop_ingest = threading.Event()
        self.peak_rss_mb = 0.0
        self.peak_device_pss_mb = 0.0
        self.broker_cpu_s = 0.0
        self.started = time.monotonic()

    def run(self, duration: float | None, view: Any) -> dict[str, Any]:
        fs = build(self.board)
        signing_key_for(self.server, self.state / "signing" / "update-key.pem")
        logs = private_dir(self.state / "logs")
        if self.external:
            self._check_reachable()
        else:
            self.broker = Broker(self.server.broker_dir, self.server.ca).start()
        self.broker_up = True
        try:
            ingests = self._start_ingests() if self.with_ingest else []
            host, port = self._broker_address()
            view.note(f"broker on {host}:{port} (TLS, client certificates"
                      f"{'; not started here' if self.external else ''}); "
                      f"state in {self.state}")
            if not ingests:
                view.note("no ingest (--no-ingest): delivery is for your own pipeline to "
                          "judge; the summary counts what the devices sealed")
            if self.calibration:
                view.note(f"speed: {self.calibration.line()}")
            self._add_devices(fs, logs)
            for name in self.faults.radio_off + self.faults.power_cut:
                find_device(self.devices, name)
            self.started = time.monotonic()
            for d in self.devices:
                d.start(fs)
                time.sleep(0.02)  # no thundering herd of TLS handshakes
            end = self._loop(fs, duration, view)
            self._drain(fs, end, view)
            return self._summary(end, ingests)
        finally:
            for d in self.devices:
                d.stop()
            for link in self.links:
                link.stop()
            self.stop_ingest.set()
            self._stop_broker()

    def _broker_address(self) -> tuple[str, int]:
        if self.external:
            return self.external
        assert self.broker is not None
        return self.broker.host, self.broker.port  # an outage restarts it on the same port

    def _broker_text(self) -> str:
        host, port = self._broker_address()
        return f"{host}:{port}" + ("" if self.external else " (own)")

    def _check_reachable(self) -> None:
        host, port = self._broker_address()
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as e:
            raise ToolError(f"--broker {host}:{port}: nothing answers there ({e}): start the "
                            "broker first (`wearsafe broker-config --server "
                            f"{self.server.directory} --out DIR`, then mosquitto -c "
                            "DIR/mosquitto.conf)") from e

    def _start_ingests(self) -> list[Ingest]:
        """The ingest workers, each in a thread here with its own identity and persistent
        session, the devices partitioned between them (`wearsafe ingest --processes`:
        nothing is lost across a broker restart)."""
        def on_stored(device_id: str, piv: int, message: bytes) -> None:
            device = self.by_id.get(device_id)
            if device:
                device.on_stored(piv, message)

        host, port = self._broker_address()
        ingests = []
        for k in range(1, self.ingest_workers + 1):
            path = self.state / ("ingest.log" if k == 1 else f"ingest-{k}.log")
            log = open(path, "a")  # noqa: SIM115 - closed with the thread
            ingest = Ingest(self.server, log=log, on_stored=on_stored, process=k,
                            processes=self.ingest_workers)
            ready = threading.Event()

            def run_ingest(ingest: Ingest = ingest, ready: threading.Event = ready,
                           log: Any = log) -> None:
                try:
                    ingest.run(port, host, stop=self.stop_ingest, ready=ready)
                finally:
                    log.close()

            threading.Thread(target=run_ingest, daemon=True).start()
            if not ready.wait(15):
                raise ToolError(f"ingest worker {k} did not subscribe: see {path}")
            ingests.append(ingest)
        return ingests

    def _add_devices(self, fs: Path, logs: Path) -> None:
        host, port = self._broker_address()
        for i in range(1, self.count + 1):
            if self.network:  # the device reaches the broker through its own relay
                self.links.append(LinkEmulator(self.network, port, seed=i, broker_host=host))
                port = self.links[-1].start()
            device = self._device(fs, self.state / f"device-{i}", port)
            scenario = self.scenario or MIX[(i - 1) % len(MIX)]
            quota = self.calibration.quota(f"wearsafe-{os.getpid()}-device-{i}") \
                if self.calibration else None
            d = SimDevice(i, device, scenario, logs / f"device-{i}.log", quota=quota)
            self.devices.append(d)
            self.by_id[device.device_id] = d

    def _device(self, fs: Path, state: Path, port: int) -> Device:
        """The device in `state`, provisioned on first use; it learns this run's port."""
        known = state / "device-id"
        if known.exists():
            settings_path = state / "settings.json"
            settings = json.loads(settings_path.read_text())
            settings.update(broker_host=self.broker_host, broker_port=port,
                            batch_seconds=self.batch_seconds,
                            upload_interval_s=self.upload_interval)
            settings_path.write_text(json.dumps(settings, indent=1) + "\n")
            (state / "radio-off").unlink(missing_ok=True)
            return Device(known.read_text().strip(), state)
        if self.board == "sim":
            return provision_sim_device(self.server, fs, state, port, self.batch_seconds,
                                        self.broker_host, self.upload_interval)
        return provision_model_device(self.server, fs, state, port, self.batch_seconds,
                                      self.upload_interval, self.broker_host)

    def _loop(self, fs: Path, duration: float | None, view: Any) -> float:
        """Run until the duration ends or Ctrl-C; the host time it ended."""
        fault_start, fault_end = self.faults.window(duration)
        fault_state = "before"
        try:
            while duration is None or self.elapsed() < duration:
                now = time.monotonic()
                if fault_state == "before" and self.faults.any() and self.elapsed() >= fault_start:
                    self._fault(True, view)
                    fault_state = "during"
                elif fault_state == "during" and self.elapsed() >= fault_end:
                    self._fault(False, view)
                    fault_state = "after"
                for d in self.devices:
                    d.supervise(fs, now)
                self._measure()
                view.show(self, duration)
                time.sleep(0.5)
        except KeyboardInterrupt:
            view.note("Ctrl-C: stopping")
        if fault_state == "during":
            self._fault(False, view)
        return time.monotonic()

    def _fault(self, begin: bool, view: Any) -> None:
        if self.faults.outage_s:
            assert self.broker is not None  # refused with --broker
            if begin:
                self._stop_broker()
            else:
                self.broker = Broker(self.server.broker_dir, self.server.ca,
                                     port=self.broker.port).start()
            self.broker_up = not begin
            view.note(f"fault: broker {'down' if begin else 'up again'}")
        for name in self.faults.radio_off:
            find_device(self.devices, name).set_radio(not begin)
            view.note(f"fault: {name} radio {'off' if begin else 'on'}")
        if begin:
            for name in self.faults.power_cut:
                find_device(self.devices, name).cut_power()
                view.note(f"fault: {name} power cut for {POWER_OFF_S:.0f} s")

    def _broker_cpu(self) -> float:
        process = self.broker.process if self.broker else None
        if process and process.poll() is None:
            return self.broker_cpu_s + _cpu_seconds(process.pid)
        return self.broker_cpu_s

    def _stop_broker(self) -> None:
        if self.broker:
            self.broker_cpu_s = self._broker_cpu()
            self.broker.stop()

    def _measure(self) -> None:
        devices = [_memory_mb(d.process.pid) for d in self.devices
                   if d.process and d.process.poll() is None]
        broker = [_memory_mb(self.broker.process.pid)] if self.broker and self.broker.process \
            else []
        self.peak_device_pss_mb = max(self.peak_device_pss_mb, sum(pss for _, pss in devices))
        self.peak_rss_mb = max(self.peak_rss_mb, sum(rss for rss, _ in devices + broker))

    def _drain(self, fs: Path, end: float, view: Any) -> None:
        """Let what was sealed before `end` arrive, the devices still running (and on
        their chargers, where the radio stays up: no waiting for the next window).
        Without an ingest nothing here can see what arrived: no drain."""
        if not self.with_ingest:
            return
        docked = time.monotonic()
        for d in self.devices:
            d.set_charging(True)  # docked, a device sends its energy counts
        deadline = docked + DRAIN_S
        try:
            while any(d.lost(end) or (d.running and d.energy_at < docked)
                      for d in self.devices) and time.monotonic() < deadline:
                for d in self.devices:
                    d.supervise(fs, time.monotonic())
                view.show(self, None)
                time.sleep(0.25)
        except KeyboardInterrupt:
            pass  # the summary counts what has not arrived as lost
        view.note("stopping")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _summary(self, end: float, ingests: list[Ingest]) -> dict[str, Any]:
        produced = sum(len(d.produced(end)) for d in self.devices)
        latencies = [ms for d in self.devices for ms in d.latencies_ms(end)]
        device_cpu = sum(d.cpu_seconds() for d in self.devices)
        broker_cpu = self._broker_cpu()
        own = resource.getrusage(resource.RUSAGE_SELF)
        seconds = end - self.started
        return {
            "devices": self.count, "seconds": round(seconds, 1),
            "broker": self._broker_text(),
            "produced": produced, **self._delivery(end, produced, ingests),
            "ingest_workers": len(ingests),
            "overflows": sum(d.overflows for d in self.devices),
            "speed": self.calibration.line() if self.calibration else "desktop (unthrottled)",
            "throttled_devices": sum(d.throttled for d in self.devices),
            "network": self.network.text if self.network else "direct",
            "network_drops": sum(link.drops for link in self.links),
            "network_retransmissions": sum(link.retransmissions for link in self.links),
            "p50_ms": round(percentile(latencies, 50), 1) if ingests else None,
            "p99_ms": round(percentile(latencies, 99), 1) if ingests else None,
            "restarts": sum(d.restarts for d in self.devices),
            "power_cuts": sum(d.power_cuts for d in self.devices),
            "crashed": [d.name for d in self.devices if d.exit_code is not None],
            "cpu_devices_s": round(device_cpu, 1),
            "cpu_broker_s": round(broker_cpu, 1),
            "cpu_host_s": round(own.ru_utime + own.ru_stime, 1),
            "cpu_cores_used": round((device_cpu + broker_cpu + own.ru_utime
                                     + own.ru_stime) / max(seconds, 1e-3), 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            # what one simulated device costs this machine: how many more it can run
            "per_device": {"cpu_percent": round(100 * device_cpu / max(seconds, 1e-3)
                                                / self.count, 2),
                           "pss_mb": round(self.peak_device_pss_mb / self.count, 2)},
            "host_rss_mb": round(own.ru_maxrss / 1024, 1),
            "scenarios": {d.name: d.scenario for d in self.devices},
            "upload_interval_s": self.upload_interval, "cell_mah": self.cell_mah,
            "energy": {d.name: d.energy(self.cell_mah) for d in self.devices},
            "faults": {"outage_s": self.faults.outage_s, "radio_off": self.faults.radio_off,
                       "power_cut": self.faults.power_cut},
        }


    def _delivery(self, end: float, produced: int, ingests: list[Ingest]) -> dict[str, Any]:
        """What the store holds against what was sealed; None each without an ingest."""
        keys = ("stored", "lost", "duplicates", "redelivered", "rejected", "quarantined")
        if not ingests:
            return dict.fromkeys(keys)
        lost = sum(len(d.lost(end)) for d in self.devices)
        figures = (produced - lost, lost, sum(d.duplicates for d in self.devices),
                   *(sum(getattr(i, name) for i in ingests)
                     for name in ("duplicates", "rejected", "quarantined")))
        return dict(zip(keys, figures, strict=True))


def run(state: Path, devices: int, duration: float | None, scenario: str | None,
        batch_seconds: int, faults: Faults, live: bool | None = None,
        board: str = "sim", speed: str = "desktop", network: str | None = None,
        upload_interval: int = 0, cell_mah: float = 400.0, broker: str | None = None,
        ingest: bool = True, db: str | None = None, ingest_workers: int = 1) -> int:
    """The simulation with its view; exit status 0 unless a device crashed or lost data."""
    from host_tools.sim.live_view import view_for

    view = view_for(live)
    try:
        with sigterm_as_ctrl_c():
            simulation = Simulation(state, devices, scenario, batch_seconds, faults, board,
                                    speed, network, upload_interval, cell_mah, broker, ingest, db,
                                    ingest_workers)
            summary = simulation.run(duration, view)
    finally:
        view.close()
    (state / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    view.summary(summary)
    return 1 if summary["crashed"] or summary["lost"] or summary["duplicates"] else 0
