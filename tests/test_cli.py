"""The wearsafe command line: help everywhere, clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess

import pytest

from host_tools.cli import BOARD_RULE, GROUPS, SERVER_HELP, main, parser, resolve_aliases
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


def subparsers() -> dict[str, argparse.ArgumentParser]:
    return dict(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_one_spelling_per_concept_in_every_commands_help():
    old = {"--host", "--port", "--broker-host", "--broker-port"}  # hidden aliases only
    seen: dict[str, set[str]] = {}
    for name, sp in subparsers().items():
        for action in sp._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:
                continue
            assert not old & set(action.option_strings), (name, action.option_strings)
            seen.setdefault(action.option_strings[0], set()).add(action.help or "")
            if action.metavar == "HOST:PORT":
                assert action.option_strings in (["--broker"], ["--listen"]), name
    assert seen["--server"] == {SERVER_HELP}  # one definition
    assert all(BOARD_RULE in h for h in seen["--board"])  # the rule, stated each time
    assert {name for name, sp in subparsers().items()
            if any("--serial" in a.option_strings for a in sp._actions)} == {"flash", "hil"}
    grouped = [c for names in GROUPS.values() for c in names]
    assert sorted(grouped) == COMMANDS  # each command in exactly one group of --help


@pytest.mark.parametrize("argv, field, value", [
    (["ingest", "--server", "S", "--host", "b.example", "--port", "1883"], "broker",
     "b.example:1883"),
    (["provision", "--server", "S", "--out", "o", "--broker-host", "10.0.0.2"], "broker",
     "10.0.0.2:8883"),
    (["publish-image", "i", "--server", "S", "--port", "9883"], "broker", "localhost:9883"),
    (["broker-config", "--server", "S", "--out", "o", "--host", "127.0.0.2"], "listen",
     "127.0.0.2:8883"),
    (["flash", "--port", "/dev/ttyUSB7", "--bundle", "b"], "serial", "/dev/ttyUSB7"),
    (["hil", "--port", "/dev/ttyACM0"], "serial", "/dev/ttyACM0"),
])
def test_the_older_spellings_still_work(argv: list[str], field: str, value: str):
    assert getattr(resolve_aliases(parser().parse_args(argv)), field) == value
