"""make check: device code compiles with mpy-cross and uses only its port's modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.device.build import compile_module
from host_tools.device.check import mypy_device
from host_tools.paths import ToolError

ESP32_LACKS = '''import hashlib
import os
import cryptolib


def digest(data):
    return hashlib.sha512(data).digest()


def spawn():
    return os.fork()


def ctr_mode():
    return cryptolib.MODE_CTR
'''


def test_names_the_esp32_port_lacks_fail_with_file_line_and_name(tmp_path: Path):
    probe = tmp_path / "probe_esp32.py"
    probe.write_text(ESP32_LACKS)
    out = mypy_device("esp32_devkitc", [probe]).stdout
    assert f"{probe}:7: error: Module has no attribute \"sha512\"" in out, out
    assert f"{probe}:11: error: Module has no attribute \"fork\"" in out, out
    assert f"{probe}:15: error: Module has no attribute \"MODE_CTR\"" in out, out


def test_the_real_tree_passes_and_what_the_ports_have_is_accepted(tmp_path: Path):
    probe = tmp_path / "probe_ok.py"
    probe.write_text("import hashlib, cryptolib, machine\n"
                     "def f(k):\n    hashlib.sha256(k).digest()\n"
                     "    cryptolib.aes(k, 2, bytes(16)).encrypt(bytes(16))\n"
                     "    return machine.I2C(0)\n")
    result = mypy_device("esp32_devkitc", [probe])
    assert result.returncode == 0, result.stdout


def test_sim_board_is_checked_against_the_unix_port(tmp_path: Path):
    probe = tmp_path / "probe_unix.py"
    probe.write_text("import machine\nimport os\n\ndef f():\n    return os.getenv('HOME')\n")
    out = mypy_device("sim", [probe]).stdout
    assert f'{probe}:1: error: Cannot find implementation or library stub for module named ' \
           f'"machine"' in out, out
    assert ":5:" not in out  # the unix port has os.getenv


def test_a_syntax_error_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n    pass\n")
    with pytest.raises(ToolError, match=r"broken\.py.*line 1"):
        compile_module(bad, tmp_path / "broken.mpy", "broken.py")
