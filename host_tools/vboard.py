"""A virtual board: the MicroPython unix port behind a pseudo-terminal.

mpremote drives it exactly as it drives a USB-serial board, so the board
path of the target harness is tested without hardware. Its filesystem root
is a directory of ours, laid out like an ESP32's (lib/ on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Self

from host_tools.paths import ToolError, micropython
from host_tools.service import Service, die_with_parent
from host_tools.target import vectors_dir


class VirtualBoard(Service):
    def __init__(self, workdir: Path, heapsize: str = "96K") -> None:
        self.root = workdir / "fs"
        self.port = str(workdir / "tty")
        self.heapsize = heapsize
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        # raw,echo=0 on both sides, or mpremote's raw REPL fails.
        child = f"exec:{micropython()} -X heapsize={self.heapsize} -i"
        cmd = ["socat", f"pty,raw,echo=0,link={self.port}",
               f"{child},pty,raw,echo=0,stderr,setsid,ctty"]
        # It runs on this host, so unix-only target tests find the vector files too.
        # lib/ by its absolute path, like /lib on an ESP32: packages imported before
        # a test changes directory keep working.
        env = dict(os.environ, MICROPYPATH=f"{self.root.resolve()}/lib:.frozen",
                   WEARSAFE_SIM_DIR=str(self.root), WEARSAFE_VECTORS=vectors_dir(),
                   WEARSAFE_SIM_SPEED="0")
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
