"""A background process of ours (a broker, a virtual board), stopped on exit."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self


def die_with_parent() -> None:
    """preexec_fn: if the tool that started this process dies, even by SIGKILL, the
    process gets SIGKILL too (Linux PR_SET_PDEATHSIG), so nothing is left behind."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C and kill still stop it through the tool


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """`kill PID` stops a host tool the way Ctrl-C does: its finally blocks stop
    what it started. Ctrl-C works even where the tool was started with SIGINT
    ignored (a background job of a shell script), which Python then leaves so."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(process: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session, and its group: SIGTERM, then
    SIGKILL after 5 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Service:
    """Subclasses start `self.process` in its own session in start() and return self."""

    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process:
            stop_group(self.process)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
