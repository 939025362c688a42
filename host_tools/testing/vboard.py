"""A virtual board: the MicroPython unix port behind a pseudo-terminal.

mpremote drives it exactly as it drives a USB-serial board, so the board
path of the target harness is tested without hardware. Its filesystem root
is a directory of ours (the process's working directory), laid out like an
ESP32's (lib/ on sys.path).

It resets like a board. socat serves the pty and runs a supervisor
(`python -m host_tools.testing.vboard`, Supervisor below) that runs MicroPython on a
pty of its own and starts it again whenever it ends, as a board's firmware
comes back after a reset:
- a soft reset (Ctrl-D at the REPL, `mpremote soft-reset`, sys.exit()) prints
  "MPY: soft reboot" and comes back in the REPL it was in, raw or friendly,
  with a fresh heap;
- machine.reset() (exit status 75, RESET_EXIT) or a crash is a hard reset:
  back in the friendly REPL.
At each start, as ports/esp32/main.c does: the port's power-on code (the
esp32-port model's `import _boot` for --board esp32_devkitc; nothing for the
sim board), the board's boot.py, then, in the friendly REPL only, main.py.
Ctrl-C interrupts running code, as on a board. MicroPython finds why it
started in $WEARSAFE_VBOARD_RESET: power-on, hard or soft (the esp32-port
model's _boot runs the bootloader's step at every start, where a chip's soft
reset does not; the model can tell the two apart by it).

`--board esp32_devkitc` serves the esp32 build (build/esp32_devkitc/fs) on the
esp32-port model (host_tools.testing.esp32_model): what a flashed ESP32 runs.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import Self

from host_tools.paths import ToolError, micropython
from host_tools.processes import Service, die_with_parent
from host_tools.testing.target import DEFAULT_HEAP, heap_bytes, vectors_dir

BOARDS = ("sim", "esp32_devkitc")
POWER_ON_ENV = "WEARSAFE_VBOARD_POWER_ON"  # the supervisor's: code run first at each start
# MicroPython's, at each start: why it starts ("power-on", "hard" reset or "soft" reset)
RESET_ENV = "WEARSAFE_VBOARD_RESET"
RESET_EXIT = 75  # board/sim and the esp32-port model: machine.reset()
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_PROMPT = b">>> "
SOFT_REBOOT = b"MPY: soft reboot\r\n"
CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
HANDSHAKE_S = 10.0
# An ESP32's GC heap once grown, without PSRAM (110 KB of 32-bit objects), on this
# 64-bit port: objects here take about 1.23 times their 32-bit size (the app's
# import held 80 KB here against about 65 KB on a 32-bit port, make bench), so the
# board's 110 KB is about 135 KB here and 128K is still stricter than the board.
ESP32_HEAP = "128K"


class VirtualBoard(Service):
    def __init__(self, workdir: Path, heapsize: str = DEFAULT_HEAP, board: str = "sim") -> None:
        if board not in BOARDS:
            raise ToolError(f"a virtual board runs {' or '.join(BOARDS)}, not {board!r}")
        self.root = workdir / "fs"
        self.port = str(workdir / "tty")
        self.heapsize = heapsize
        self.board = board
        self.process: subprocess.Popen[bytes] | None = None

    def process_heap(self) -> str:
        """MicroPython's heap: the board's; the esp32-port model's own modules and chips
        (C and silicon on a board) come on top, as on the unix target."""
        if self.board == "sim":
            return self.heapsize
        from host_tools.testing.esp32_model import MODEL_HEAP

        return str(heap_bytes(self.heapsize) + MODEL_HEAP)

    def environment(self) -> dict[str, str]:
        root = self.root.resolve()
        if self.board == "sim":
            # It runs on this host, so unix-only target tests find the vector files too.
            # lib/ by its absolute path, like /lib on an ESP32: packages imported before
            # a test changes directory keep working.
            return dict(os.environ, MICROPYPATH=f"{root}/lib:.frozen",
                        WEARSAFE_SIM_DIR=str(root), WEARSAFE_VECTORS=vectors_dir(),
                        WEARSAFE_SIM_SPEED="0", **{POWER_ON_ENV: ""})
        from host_tools.device.build import build
        from host_tools.testing.esp32_model import POWER_ON, model_env

        # The model's modules (the port's own), the esp32 build as the firmware's
        # frozen modules, then /lib (the board's root lib/) as on an ESP32.
        env = model_env(build(self.board), root, WEARSAFE_SIM_SPEED="0",
                        **{POWER_ON_ENV: POWER_ON})
        env["MICROPYPATH"] += os.pathsep + f"{root}/lib"
        return env

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        # raw,echo=0 on both sides, or mpremote's raw REPL fails. The supervisor's
        # stderr stays socat's (ours): MicroPython's goes to the board's pty.
        child = (f"exec:{sys.executable} -m host_tools.testing.vboard {micropython()} "
                 f"{self.process_heap()}")
        cmd = ["socat", f"pty,raw,echo=0,link={self.port}",
               f"{child},pty,raw,echo=0,setsid,ctty"]
        try:
            self.process = subprocess.Popen(cmd, cwd=self.root, env=env, start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        except FileNotFoundError as e:
            raise ToolError("socat not found: run `make deps` (Debian package socat)") from e
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.stop()
                raise ToolError(f"virtual board did not start: {err.strip()}")
            time.sleep(0.02)
        return self


# -- the supervisor: MicroPython's life cycle on the board's side of the pty

# Run through the raw REPL at each start (MicroPython's -c cannot: with -i it
# ignores SystemExit, which is how machine.reset() and sys.exit() end the port).
BOOT = """\
{power_on}
def _ws_boot(scripts):
    import sys
    for name in scripts:
        try:
            f = open(name)
        except OSError:
            continue
        try:
            code = compile(f.read(), name, "exec")
            f.close()
            exec(code, globals())
        except (Exception, KeyboardInterrupt) as e:
            sys.print_exception(e)
            return
_ws_boot({scripts!r})
del _ws_boot
"""


class ChildEnded(Exception):
    """MicroPython ended (a reset); the supervisor starts it again."""


class Supervisor:
    """Proxies the board's pty (stdin/stdout, from socat) to MicroPython on a pty of
    its own, restarting it after each reset in the REPL mode a board would be in."""

    def __init__(self, command: list[str], power_on: str) -> None:
        self.command = command
        self.power_on = power_on
        self.pid = 0
        self.fd = -1
        self.raw = False  # the REPL the board is in: raw (mpremote) or friendly
        self.holding = False  # while booting: input waits, but Ctrl-C goes through
        self.held = b""
        self.output = b""  # from MicroPython, not yet handled
        self.echo = False  # its output is the board's (not the unix port's own banner)
        self.tail = b""  # the last bytes passed on, to find the raw REPL's banner
        self.starts = 0  # how many times MicroPython reached its REPL
        self.interrupted = False  # we sent it SIGINT
        self.status = 0  # its last wait status

    # host side
    def to_host(self, data: bytes) -> None:
        while data:
            data = data[os.write(1, data):]

    def from_host(self, data: bytes) -> None:
        """Input for MicroPython. Ctrl-C while it runs code interrupts it, as a
        board's UART does; at a prompt it is a key like any other."""
        if self.holding and not self.echo:  # it is not running the boot code yet
            self.held += data
            return
        while CTRL_C in data:
            before, _, data = data.partition(CTRL_C)
            self.to_child_or_hold(before)
            if self.running_code():
                os.kill(self.pid, signal.SIGINT)
                self.interrupted = True
            else:
                self.to_child_or_hold(CTRL_C)
        self.to_child_or_hold(data)

    def to_child_or_hold(self, data: bytes) -> None:
        if self.holding:
            self.held += data
            return
        if self.raw and CTRL_B in data:
            self.raw = False
        self.to_child(data)

    def running_code(self) -> bool:
        """MicroPython catches SIGINT only while it runs code (unix_mphal.c
        mp_hal_set_interrupt_char); at a prompt SIGINT would end it."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                caught = next(line for line in f if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return False
        return bool(int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)))

    # MicroPython side
    def spawn(self, reset: str) -> None:
        env = dict(os.environ, **{RESET_ENV: reset})
        pid, fd = pty.fork()
        if pid == 0:  # the child, on a terminal of its own
            try:
                # raw: bytes pass as they are (mpremote reads "\r\n" exactly), and
                # Ctrl-C is a byte: from_host makes it SIGINT when it should be
                tty.setraw(0)
                die_with_parent()
                os.execve(self.command[0], self.command, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output, self.echo = b"", False
        self.interrupted = False

    def to_child(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # it ended: the reset is seen on reading

    def pump(self, timeout: float | None) -> None:
        """Wait for input from either side once; what MicroPython printed goes to
        self.output. ChildEnded when MicroPython has ended."""
        ready, _, _ = select.select([0, self.fd], [], [], timeout)
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                raise SystemExit(0)  # socat closed the board's pty
            self.from_host(data)
        if self.fd in ready:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                raise ChildEnded
            self.output += data

    def expect(self, marker: bytes, timeout: float | None = HANDSHAKE_S,
               forward: bool = False) -> bytes:
        """MicroPython's output up to and with marker; forward: pass what comes before
        the marker on to the host as it comes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while marker not in self.output:
            if forward and len(self.output) > len(marker):
                self.pass_on(self.output[:-len(marker)])
                self.output = self.output[-len(marker):]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"MicroPython did not print {marker!r}: {self.output!r}")
            self.pump(left)
        at = self.output.index(marker) + len(marker)
        data, self.output = self.output[:at], self.output[at:]
        if forward:
            self.pass_on(data[:-len(marker)])
        return data

    def pass_on(self, data: bytes) -> None:
        seen = self.tail + data
        if RAW_BANNER in seen:
            self.raw = True
        self.tail = seen[1 - len(RAW_BANNER):]  # never a whole banner: it counts once
        self.to_host(data)

    def boot(self, raw: bool) -> None:
        """Power-on code, boot.py, then (friendly REPL) main.py; then the REPL `raw`
        asks for, as the board shows it after a reset."""
        self.holding, self.held, self.raw = True, b"", raw
        self.expect(FRIENDLY_PROMPT)  # the unix port's banner: a board prints its own below
        self.starts += 1
        self.to_child(CTRL_A)
        self.expect(RAW_BANNER + b">")
        scripts = ("boot.py",) if raw else ("boot.py", "main.py")
        self.to_child(BOOT.format(power_on=self.power_on, scripts=scripts).encode() + CTRL_D)
        self.expect(b"OK")
        self.echo = True
        self.expect(CTRL_D, None, forward=True)  # what it printed
        self.expect(CTRL_D, None, forward=True)  # its traceback, if any
        self.expect(b">")
        if raw:
            self.pass_on(RAW_BANNER + b">")
        else:
            self.to_child(CTRL_B)
            self.pass_on(self.expect(FRIENDLY_PROMPT))  # banner and prompt
            self.raw = False
        self.holding, held = False, self.held
        self.from_host(held)

    def proxy(self) -> None:
        while True:
            if self.output:
                data, self.output = self.output, b""
                self.pass_on(data)
            self.pump(None)

    def reap(self) -> bool:
        """Wait for MicroPython's end; True for a hard reset (machine.reset, a crash)."""
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        self.pid, self.status = 0, status
        if self.output and self.echo:
            self.pass_on(self.output)
        if os.WIFSIGNALED(status):
            # our SIGINT, as it ended running code and reached the prompt: a soft reset
            return not (self.interrupted and os.WTERMSIG(status) == signal.SIGINT)
        return os.WEXITSTATUS(status) == RESET_EXIT

    def serve(self) -> None:
        raw, reset = False, "power-on"  # the friendly REPL
        while True:
            self.spawn(reset)
            starts = self.starts
            try:
                self.boot(raw)
                self.proxy()
            except ChildEnded:
                if self.starts == starts:  # it never reached its REPL: not a reset
                    output = self.output
                    self.reap()
                    raise ChildEnded(f"MicroPython ended at start (status {self.status}): "
                                     f"{output!r}") from None
            if self.reap():
                raw, reset = False, "hard"
                time.sleep(0.1)  # a board takes a while to come back too
            else:
                raw, reset = self.raw, "soft"
                self.to_host(SOFT_REBOOT)

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    """python -m host_tools.testing.vboard MICROPYTHON HEAPSIZE: the supervisor socat runs."""
    die_with_parent()
    micropython_path, heapsize = argv

    def end(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, end)
    supervisor = Supervisor([micropython_path, "-X", f"heapsize={heapsize}", "-i"],
                            os.environ.get(POWER_ON_ENV, ""))
    try:
        supervisor.serve()
    except (TimeoutError, ChildEnded) as e:
        print(f"virtual board: {e}", file=sys.stderr)
        return 1
    finally:
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
