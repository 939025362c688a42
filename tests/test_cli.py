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


def test_server_commands_give_clear_errors(tmp_path):
    for argv, message in (
        (["export", "--server", str(tmp_path), "--device", "x"], "not a wearsafe server"),
        (["forget", "--server", str(tmp_path), "--device", "x"], "not a wearsafe server"),
    ):
        out = subprocess.run([venv_tool("wearsafe"), *argv], capture_output=True, text=True)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_broker_config_writes_a_tls_only_configuration(tmp_path):
    out = tmp_path / "broker"
    subprocess.run([venv_tool("wearsafe"), "broker-config", "--server", str(tmp_path / "srv"),
                    "--out", str(out), "--port", "8883"], check=True, capture_output=True)
    conf = (out / "mosquitto.conf").read_text()
    assert "\nlistener 8883 0.0.0.0\n" in conf and conf.count("\nlistener ") == 1
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "password_file" not in conf and "allow_anonymous false" in conf
    assert (out / "localhost.key").stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o700
    policy = json.loads((out / "aws-iot-policy.json").read_text())
    actions = {s["Action"] for s in policy["Statement"]}
    assert actions == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
