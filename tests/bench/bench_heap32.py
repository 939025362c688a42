"""The application's GC heap on a 32-bit MicroPython beside the unix port's (64-bit),
at four moments, each against the ESP32's GC heap (about 110 KB without PSRAM;
Wi-Fi and mbedTLS live outside it):

  after import    boot.py's boot selector, the board module, wearsafe.app
  steady state    the sensor loop for 125 s: vitals each second, a batch sealed
                  every 60 s, stored in the outbox and published (PUBACK)
  OTA download    the loop until the first batch is published, then an update
                  announced: chunks fetched through wearsafe.ota.updater into
                  the streaming verifier, the final checks, the install, the reset
  reconnect       the loop for 62 s, then the session dropped and
                  Link.connect() again (CONNECT/CONNACK, SUBSCRIBE/SUBACK)

The 32-bit MicroPython is the webassembly port (the npm package pinned in
heap32/package.json, installed into .cache/node/ on first use) under Node.
Both ports run the same steps (heap32/device/h32.py: app.run()'s loop, a step
at a time) on the sim board, with a device provisioned as provision.py does
it and the sim build's .mpy files. Neither talks to a network: socket and ssl
are stand-ins on both (heap32/device/h32_ssl.py: a scripted broker), and so
is cryptolib on the webassembly port, which lacks it.

Live: gc.mem_alloc() after a collection, the largest at the phase's step
boundaries. Peak, unix: the smallest heap the run completes in (the run ends
with the phase; fragmentation included). Peak, webassembly: estimated. That
port collects garbage only when control returns to JavaScript (gc.collect()
inside Python code only asks for it), so its live heap can be had between
steps but not inside one; the estimate scales its live heap by the unix
port's peak/live for the same run (an upper estimate, also printed, adds the
unix port's peak - live unscaled). The figures leave out the bench's own
modules (measured on each port, printed). Also printed: what the ESP32
manifest freezes, an estimate of the figures with the application frozen
(the loaded modules' .mpy bytes off), and, as a check on h32.App, the unix
port's need for wearsafe.app.run() itself beside the step-by-step run's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from host_tools.device.build import build, compile_module  # noqa: E402
from host_tools.device.provision import provision_sim_device  # noqa: E402
from host_tools.fleet.server import Server  # noqa: E402
from host_tools.paths import CACHE, ToolError, micropython  # noqa: E402
from host_tools.updates import (
    images,  # noqa: E402
    release,  # noqa: E402
)

HEAP32 = Path(__file__).resolve().parent / "heap32"
NODE_DIR = CACHE / "node"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
BUDGET = 110 * 1024  # ESP32 without PSRAM: the GC heap grows to about this
EPOCH = "1767225600"  # 2026-01-01: a set clock
RUNS = {"import": [], "steady": [125], "ota": [120], "reconnect": [62]}
CHECK = ("app", [125])  # wearsafe.app.run() itself (unix): needs what "steady" does?
ROWS = [("after import", "import"), ("steady state", "steady"),
        ("OTA download", "ota"), ("reconnect", "reconnect")]
SEARCH_STEP = 256  # bytes: the resolution of the smallest-heap search


@dataclass
class Scene:
    root: Path
    lib: Path  # the sim build's fs/lib, copied
    bench: Path  # heap32/device/*.py compiled
    state: Path  # the provisioned device, never run itself: each run takes a copy
    broker: Path  # the signed update
    announcement: dict[str, object]
    copies: Iterator[int] = field(default_factory=count)  # next() is atomic: threads

    def broker_setup(self, run: str, image: str) -> str:
        """The scripted broker: an update announced after the device's second message
        (its status, then the first batch), for the OTA run; nothing for the others."""
        a = self.announcement
        if run != "ota":
            return "import h32_ssl\nh32_ssl.broker()\n"
        prefix = f"updates/sim/{str(a['digest'])[:16]}/"
        return (f"import h32_ssl\nh32_ssl.broker({'updates/sim/announce'!r}, "
                f"{json.dumps(a)!r}, 2, {prefix!r}, {image!r}, {a['chunk']}, {a['size']})\n")

    def fresh_state(self) -> Path:
        copy = self.root / "runs" / str(next(self.copies))
        shutil.copytree(self.state, copy)
        return copy


def prepare(root: Path) -> Scene:
    """A provisioned sim device, its update signed, the bench's device files compiled."""
    fs = build("sim")
    lib = root / "lib"
    shutil.copytree(fs / "lib", lib)  # others may rebuild build/sim while this runs
    server = Server(root / "server").init()
    key = images.signing_key_for(server, root / "signing" / "update-key.pem")
    device = provision_sim_device(server, fs, root / "device", 8883, batch_seconds=60)
    (root / "broker").mkdir()
    bundle = images.app_bundle("sim", root / "app.tar")
    image = images.sign(bundle, root / "broker" / "update.img", key, "9.9.9", 9, "sim", "app")
    bench = root / "bench"
    for src in sorted((HEAP32 / "device").glob("*.py")):
        compile_module(src, bench / f"{src.stem}.mpy", src.name)
    return Scene(root, lib, bench, device.state, root / "broker", release.describe(image))


# -- the unix port (64-bit)

UNIX = """
import gc
gc.collect(); base = gc.mem_alloc()
import h32
h32.standins()
{setup}
gc.collect(); print("bench", base, gc.mem_alloc())
h32.{call}
"""


def args(run: str) -> str:
    return "".join(f", {a!r}" for a in dict([CHECK], **RUNS)[run])


def unix(scene: Scene, run: str, call: str, heap: int) -> subprocess.CompletedProcess[str]:
    state = scene.fresh_state()
    code = UNIX.format(setup=scene.broker_setup(run, str(scene.broker / "update.img")),
                       call=call)
    env = dict(os.environ, MICROPYPATH=f"{scene.bench}:{scene.lib}:.frozen",
               WEARSAFE_SIM_DIR=str(state), WEARSAFE_SIM_SPEED="0", WEARSAFE_SIM_SEED="1",
               WEARSAFE_SIM_EPOCH=EPOCH)
    try:
        return subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code], env=env,
                              cwd=state, capture_output=True, text=True, timeout=600,
                              check=False)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def unix_live(scene: Scene, run: str) -> dict[str, object]:
    """Boundaries [(label, live)], the bench's own share, the modules loaded at the end."""
    done = unix(scene, run, f"boundaries({run!r}{args(run)})", 4 << 20)
    if done.returncode != 0:
        raise ToolError(f"unix port, run {run}:\n{done.stdout[-3000:]}{done.stderr}")
    steps, own, modules = [], 0, []
    for line in done.stdout.splitlines():
        word = line.split()
        if word[:1] == ["live"]:
            steps.append((word[1], int(word[2])))
        elif word[:1] == ["bench"]:
            own = int(word[2]) - int(word[1])
        elif word[:1] == ["modules"]:
            modules = word[1:]
    return {"steps": steps, "own": own, "modules": modules}


def unix_peak(scene: Scene, run: str) -> int:
    """The smallest heap (bytes, to SEARCH_STEP) the whole run completes in."""
    call = f"straight({run!r}{args(run)})"

    def fits(heap: int) -> bool:
        return unix(scene, run, call, heap).returncode == 0

    low, high = 16 * 1024, 256 * 1024
    while not fits(high):
        low, high = high, 2 * high
        if high > 16 << 20:
            raise ToolError(f"unix port, run {run}: fails even with a 16 MB heap")
    while high - low > SEARCH_STEP:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high


# -- the webassembly port (32-bit)

def wasm_port() -> tuple[Path | None, str]:
    """The pinned package's micropython.mjs, installed on first use; or None and why."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        return None, "Node.js is not installed (node not found)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    pinned = json.loads((HEAP32 / "package.json").read_text())["dependencies"][PACKAGE]
    package = NODE_DIR / "node_modules" / PACKAGE
    try:
        have = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != pinned:
        if not npm:
            return None, f"npm is not installed, so {PACKAGE} {pinned} cannot be"
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(HEAP32 / name, NODE_DIR / name)
        print(f"installing {PACKAGE} {pinned} into {NODE_DIR} (npm ci)", flush=True)
        try:
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts",
                                   "--loglevel=error"], cwd=NODE_DIR, capture_output=True,
                                  text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return None, f"npm ci of {PACKAGE} {pinned} took over 5 minutes"
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            return None, f"npm ci of {PACKAGE} {pinned} failed: {reason}"
    return package / "micropython.mjs", f"{PACKAGE} {pinned} under Node {version}"


def wasm_runs(scene: Scene, mjs: Path) -> dict[str, dict[str, object]]:
    """Per run: boundaries [(label, heap in use as the step ended, live after it)],
    the live heap before the first step, and the bench's own share."""
    config = {
        "micropython": str(mjs), "heapsize": 64 * 1024, "pystack": 8192,
        "trees": [[str(scene.lib), "/lib"], [str(scene.bench), "/bench"],
                  [str(scene.state), "/state"], [str(scene.broker), "/broker"]],
        "env": {"WEARSAFE_SIM_DIR": "/state", "WEARSAFE_SIM_SPEED": "0",
                "WEARSAFE_SIM_SEED": "1", "WEARSAFE_SIM_EPOCH": EPOCH},
        "runs": [{"name": run, "args": RUNS[run],
                  "setup": scene.broker_setup(run, "/broker/update.img")} for run in RUNS]}
    path = scene.root / "wasm.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(["node", str(HEAP32 / "run.mjs"), str(path)], capture_output=True,
                          text=True, timeout=600, check=False)
    runs: dict[str, dict[str, object]] = {run: {"steps": []} for run in RUNS}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        run = runs[row["run"]]
        if "error" in row:
            raise ToolError(f"run {row['run']}: {row['error']}\n" + "\n".join(row["log"][-15:]))
        if "base" in row:
            run["own"], run["start"] = row["standins"] - row["base"], row["standins"]
        elif "label" in row:
            run["steps"].append((row["label"], row["used"], row["live"]))  # type: ignore[attr-defined]
    if done.returncode != 0 or not all(r["steps"] for r in runs.values()):
        raise ToolError(f"node run.mjs failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return runs


# -- what is frozen, what is loaded

def frozen() -> tuple[int, int, int]:
    """(modules, .mpy bytes) board/esp32_devkitc/manifest.py freezes, and the .mpy
    bytes of the test-only modules it leaves out."""
    from tests.test_manifest import LIB, declared_test_only, module_name, read_manifest

    modules, _, _ = read_manifest()
    left_out = [p for p in LIB.rglob("*.py") if module_name(p, LIB) in declared_test_only()]
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in [*modules.items(), *((module_name(p, LIB), p) for p in left_out)]:
            out = Path(tmp) / f"{len(sizes)}.mpy"
            compile_module(src, out, name.replace(".", "/") + ".py")
            sizes[name] = out.stat().st_size
    kept = sum(v for k, v in sizes.items() if k in modules)
    return len(modules), kept, sum(sizes.values()) - kept


def loaded_mpy(lib: Path, modules: list[str]) -> tuple[int, int]:
    """(modules, .mpy bytes) of the build's modules among `modules`."""
    files = [lib / f"{m.replace('.', '/')}.mpy" for m in modules]
    files += [lib / m.replace(".", "/") / "__init__.mpy" for m in modules]
    found = [f.stat().st_size for f in files if f.is_file()]
    return len(found), sum(found)


# -- the figures

def phase(run: str, labels: list[str]) -> slice:
    """The boundaries of the moment itself: the import; the loop after the start; the
    steps after the first batch (the update, announced then); the drop and reconnect."""
    if run == "import":
        return slice(labels.index("import"), labels.index("import") + 1)
    if run == "reconnect":
        return slice(labels.index("drop"), None)
    return slice(labels.index({"steady": "start", "ota": "seal"}[run]) + 1, None)


@dataclass
class Row:
    live64: int
    peak64: int
    live32: int = 0
    peak32: int = 0  # estimated: live32 by the unix port's peak/live for the run
    upper32: int = 0  # estimated: live32 plus the unix port's peak - live
    mpy: int = 0  # .mpy bytes of the build's modules loaded by the end of the run


def row(run: str, live64: dict, peak64: dict, wasm: dict | None, lib: Path) -> Row:
    steps, own = live64[run]["steps"], live64[run]["own"]
    lives = [v for _, v in steps]
    r = Row(max(lives[phase(run, [s[0] for s in steps])]) - own, peak64[run] - own)
    r.mpy = loaded_mpy(lib, live64[run]["modules"])[1]
    if wasm is not None:
        all64 = max(lives) - own
        steps32, own32 = wasm[run]["steps"], wasm[run]["own"]
        lives32 = [s[2] for s in steps32]
        all32 = max(lives32) - own32
        r.live32 = max(lives32[phase(run, [s[0] for s in steps32])]) - own32
        r.peak32 = round(all32 * r.peak64 / all64)
        r.upper32 = all32 + r.peak64 - all64
    return r


def allocated32(wasm: dict, run: str, label: str) -> int:
    """The most a step labelled `label` allocated on the 32-bit port."""
    steps = wasm[run]["steps"]
    before = [wasm[run]["start"]] + [s[2] for s in steps[:-1]]
    return max(s[1] - b for s, b in zip(steps, before, strict=True) if s[0] == label)


def kb(n: float) -> str:
    return f"{n / 1024:.1f}"


def report(rows: dict[str, Row], wasm: dict | None, port: str, own: dict[str, int],
           check: tuple[int, int]) -> None:
    print(f"{'GC heap, KB: live / peak':26}{'unix (64-bit)':>15}{'wasm (32-bit)':>17}"
          f"{'ESP32 budget':>14}")
    for title, run in ROWS:
        r = rows[run]
        line = f"{title:26}{kb(r.live64):>8} / {kb(r.peak64):<6}"
        if wasm is not None:
            line += f"{kb(r.live32):>8} / ~{kb(r.peak32):<6}{BUDGET // 1024:>6} KB  "
            line += "live over" if r.live32 > BUDGET else "peak over" \
                if r.peak32 > BUDGET else f"{kb(BUDGET - r.peak32)} KB spare"
        else:
            line += f"{'-':>12}{'':5}{BUDGET // 1024:>6} KB"
        print(line)
    ports = f"the MicroPython unix port and by {port}; 32-bit object sizes stand in for " \
        "the ESP32's" if wasm else "the MicroPython unix port"
    print(f"Source: the sim build's .mpy files on the sim board, run by {ports}. Not counted: "
          f"the bench's harness and stand-ins "
          f"({', '.join(f'{kb(v)} KB on {k}' for k, v in own.items())}; a stand-in TLS "
          f"session, counted, is a few hundred bytes).")
    if wasm is None:
        print(f"No 32-bit figures: {port}. The unix figures above are complete.")
    else:
        upper = ", ".join(kb(rows[run].upper32) for _, run in ROWS)
        steps = {name: kb(allocated32(wasm, run, label)) for name, run, label in (
            ("the first connect (TLS context built)", "reconnect", "connect"),
            ("a reconnect", "reconnect", "reconnect"), ("sealing a batch", "steady", "seal"),
            ("a second of sensing (the sim's chips included)", "steady", "sense"),
            ("the update's last step (checks, install)", "ota", "reset"))}
        print("Peak: unix, the smallest heap the run completes in, to the end of that moment; "
              "wasm (~, estimated: that port collects garbage only between steps, never "
              "inside one), its live heap times the unix port's peak/live for the run. Adding "
              f"the unix port's peak - live unscaled instead, an upper estimate: {upper} KB. "
              "All a step allocates on wasm: "
              + ", ".join(f"{name} {v} KB" for name, v in steps.items()) + ".")
        print("Frozen instead (est.: the loaded modules' .mpy bytes off both figures), "
              "32-bit: " + ", ".join(
                  f"{title} {kb(rows[run].live32 - rows[run].mpy)} / "
                  f"~{kb(rows[run].peak32 - rows[run].mpy)}" for title, run in ROWS) + " KB.")
    count, size, left_out = frozen()
    print(f"Frozen by board/esp32_devkitc/manifest.py: {count} modules, {kb(size)} KB of "
          f".mpy (test-only, left out: {kb(left_out)} KB). Measured here as loaded from "
          f".mpy files (flash without --frozen, or after an app update): by the end of the "
          f"steady state, {kb(rows['steady'].mpy)} KB of .mpy is bytecode in the GC heap.")
    print(f"Check, unix: wearsafe.app.run() itself for {CHECK[1][0]} s needs {kb(check[0])} KB,"
          f" the bench's step-by-step run {kb(check[1])} KB.")


def main() -> None:
    started = time.monotonic()
    mjs, port = wasm_port()
    with tempfile.TemporaryDirectory(prefix="heap32-") as tmp:
        scene = prepare(Path(tmp))
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            live_jobs = {run: pool.submit(unix_live, scene, run) for run in RUNS}
            peak_jobs = {run: pool.submit(unix_peak, scene, run) for run in [*RUNS, CHECK[0]]}
            wasm = None
            if mjs is not None:
                try:
                    wasm = wasm_runs(scene, mjs)
                except ToolError as e:
                    port = f"the webassembly port failed: {e}"
            live64 = {run: job.result() for run, job in live_jobs.items()}
            peak64 = {run: job.result() for run, job in peak_jobs.items()}
        rows = {run: row(run, live64, peak64, wasm, scene.lib) for run in RUNS}
    own = {"unix": live64["import"]["own"]}
    if wasm is not None:
        own["wasm"] = wasm["import"]["own"]  # type: ignore[assignment]
    check = (peak64[CHECK[0]] - own["unix"], peak64["steady"] - own["unix"])
    report(rows, wasm, port, own, check)
    print(f"bench took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
