"""make build assembles a device filesystem of compiled modules."""

from __future__ import annotations

import subprocess

import pytest

from host_tools.device.build import build, device_sources
from host_tools.paths import ToolError, board_names, micropython

MPY_V6 = (ord("M"), 6)


@pytest.mark.parametrize("board", ["sim", "esp32_devkitc"])
def test_every_module_is_compiled_and_nothing_else_is_source(board: str):
    fs = build(board)
    assert (fs / "boot.py").is_file() and (fs / "main.py").is_file()
    for _, rel in device_sources(board):
        compiled = fs / "lib" / rel.with_suffix(".mpy")
        assert tuple(compiled.read_bytes()[:2]) == MPY_V6, compiled
    assert not list((fs / "lib").rglob("*.py"))
    assert (fs / "lib" / "umqtt" / "simple.mpy").is_file()
    assert not (fs / "lib" / "manifest.mpy").exists()


def test_the_unix_port_runs_the_sim_tree():
    fs = build("sim")
    out = subprocess.run([micropython(), "-c", "import board, wearsafe; print(board.NAME)"],
                         cwd=fs, env={"MICROPYPATH": "lib"}, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.strip() == "sim"


def test_an_unknown_board_is_refused_with_the_choices():
    with pytest.raises(ToolError, match="unknown board 'esp8266': choose one of"):
        build("esp8266")
    assert board_names() == ["esp32_devkitc", "sim"]
