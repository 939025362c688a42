"""The wearsafe command line: help everywhere, clear errors."""

from __future__ import annotations

import json
import subprocess

import pytest

from host_tools.cli import main, parser
from host_tools.paths import venv_tool

COMMANDS = sorted(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str):
    out = subprocess.run([venv_tool("wearsafe"), command, "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"usage: wearsafe {command}")


def test_a_bad_board_is_a_clear_error_not_a_traceback(capsys: pytest.CaptureFixture[str]):
    assert main(["build", "--board", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wearsafe build: error: unknown board 'nope'")
    assert "Traceback" not in err


def test_sim_runs_a_provisioned_device_that_seals_what_it_would_publish(tmp_path):
    out = subprocess.run([venv_tool("wearsafe"), "sim", "--duration", "7", "--batch-seconds",
                          "2", "--state", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "device-1 | " in out.stdout and " info boot wearsafe " in out.stdout
    assert out.stdout.count(" sealed to devices/") >= 2, out.stdout
    device = tmp_path / "device-1"
    assert device.stat().st_mode & 0o777 == 0o700
    assert (device / "device.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((device / "device.json").read_text())["key"] not in out.stdout
