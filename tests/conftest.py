from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.paths import ROOT
from host_tools.sim.fleet import SIM_HEAP

WSTEST = ROOT / "tests" / "target" / "wstest.py"


def run_pytest(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """pytest in a child process with the target plugin, as a user would run it."""
    cmd = [sys.executable, "-m", "pytest", "-p", "host_tools.testing.target_plugin",
           "-p", "no:cacheprovider", "--rootdir", str(cwd), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), check=False)


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    """An empty folder of target tests, with the device runner beside them."""
    d = tmp_path / "target"
    d.mkdir()
    (d / "wstest.py").write_text(WSTEST.read_text())
    return d


def device_env(state: Path) -> dict[str, str]:
    """Environment of a simulated device whose state lives in `state`."""
    from host_tools.device.build import BUILD
    from host_tools.device.provision import sim_env

    return sim_env(BUILD / "sim" / "fs", state)


def run_device(code: str, state: Path, heap: str = "96K") -> str:
    """Run MicroPython code on the sim board (the build must exist); return its stdout."""
    from host_tools.paths import micropython

    done = subprocess.run([micropython(), "-X", f"heapsize={heap}", "-c", code], cwd=state,
                          env=device_env(state), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def sim_build() -> Path:
    from host_tools.device.build import build

    return build("sim")


class Fleet:
    """A server directory, a real Mosquitto with TLS on a free port, and the ingest;
    its devices run the sim board's build, or board/esp32_devkitc's over the
    esp32-port model."""

    def __init__(self, root: Path, fs: Path, board: str = "sim", db: str | None = None) -> None:
        from host_tools.fleet.broker import Broker
        from host_tools.fleet.server import Server

        self.root = root
        self.fs = fs
        self.board = board
        from host_tools.updates.images import signing_key_for

        self.server = Server(root / "server").init(db)
        self.signing_key = signing_key_for(self.server, root / "signing" / "update-key.pem")
        self.broker = Broker(self.server.broker_dir, self.server.ca)
        self.ingest_log = root / "ingest.log"
        self._devices = 0

    def start(self) -> Fleet:
        self.broker.start()
        return self.start_ingest()

    def start_ingest(self) -> Fleet:
        """The ingest, in a thread of this process (its counters are the test's to read)."""
        import threading

        from host_tools.fleet.ingest import Ingest

        self._stop = threading.Event()
        ready = threading.Event()
        self._log = open(self.ingest_log, "a")  # noqa: SIM115 - closed in stop_ingest()
        self.ingest = Ingest(self.server, log=self._log)
        self._thread = threading.Thread(target=self.ingest.run, args=(self.broker.port,),
                                        kwargs={"stop": self._stop, "ready": ready},
                                        daemon=True)
        self._thread.start()
        assert ready.wait(10), "the ingest did not subscribe"
        return self

    def stop_ingest(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._log.close()

    def stop(self) -> None:
        self.stop_ingest()
        self.broker.stop()

    def add_device(self, batch_seconds: int = 2):  # type: ignore[no-untyped-def]
        from host_tools.device.provision import provision_sim_device
        from host_tools.testing.esp32_model import provision_model_device

        self._devices += 1
        add = provision_sim_device if self.board == "sim" else provision_model_device
        return add(self.server, self.fs, self.root / f"device-{self._devices}", self.broker.port,
                   batch_seconds)

    def app_command(self, device, seconds: int, speed: str = "0", heap: str = SIM_HEAP,  # type: ignore[no-untyped-def]
                    **env: str) -> dict:  # type: ignore[type-arg]
        """subprocess arguments: the device powers on (boot.py) and runs `seconds` of
        simulated time."""
        from host_tools.device.provision import sim_env
        from host_tools.paths import micropython
        from host_tools.testing.esp32_model import power_on
        from host_tools.testing.target import heap_bytes

        code = f"import boot, wearsafe.app; wearsafe.app.run({seconds})"
        if self.board != "sim":
            return dict(power_on(self.fs, device.state, code, heap_bytes(heap),
                                 WEARSAFE_SIM_SPEED=speed, **env), text=True)
        return {"args": [micropython(), "-X", f"heapsize={heap}", "-c", code],
                "cwd": self.fs, "text": True,
                "env": sim_env(self.fs, device.state, WEARSAFE_SIM_SPEED=speed, **env)}

    def run_app(self, device, seconds: int, speed: str = "0", heap: str = SIM_HEAP,  # type: ignore[no-untyped-def]
                timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        """The firmware's app on the sim board for `seconds` of simulated time."""
        return subprocess.run(**self.app_command(device, seconds, speed, heap, **env),
                              capture_output=True, timeout=timeout, check=False)

    def wait_stored(self, count: int, timeout: float = 20) -> int:
        import time

        deadline = time.monotonic() + timeout
        while self.ingest.stored < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ingest.stored


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked both_stores runs once with the store in SQLite files, once in a
    real PostgreSQL (host_tools.testing.postgres)."""
    if "store_url" in metafunc.fixturenames \
            and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The --db of the fleet under test: None (SQLite files) unless both_stores, or a
    test's own parametrize("store_url", ["postgresql"], indirect=True)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    return str(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def fleet(tmp_path: Path, sim_build: Path, store_url: str | None):  # type: ignore[no-untyped-def]
    f = Fleet(tmp_path, sim_build, db=store_url).start()
    yield f
    f.stop()


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """A real PostgreSQL server for the session (host_tools.testing.postgres)."""
    from host_tools.testing.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def esp32_fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fleet of modelled ESP32s (board/esp32_devkitc's build over the esp32-port model)."""
    from host_tools.device.build import build

    f = Fleet(tmp_path, build("esp32_devkitc"), "esp32_devkitc").start()
    yield f
    f.stop()
