"""The CRL is re-signed before it ends (issue 13, finding 3's CRL part).

Mosquitto checks every client certificate against the CRL (OpenSSL's
X509_V_FLAG_CRL_CHECK), its nextUpdate included: once a CRL has ended the
broker refuses every device, valid or not. Reproduced here against a real
Mosquitto with a CRL signed to end a few seconds into the test; then
`wearsafe crl-renew` re-signs it, replaces the broker's copy whole and sends
the broker SIGHUP, and the valid device is back while the revoked one stays out.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest

from host_tools.cli import main
from host_tools.fleet.broker import Broker
from host_tools.fleet.pki import CRL_DAYS, CRL_RENEW_DAYS, FleetCA, crl_number
from host_tools.fleet.server import Server
from tests.hostile import admitted

VALID = "00000000000000c1"
REVOKED = "00000000000000c2"


def _fleet_ca(tmp_path: Path) -> tuple[Server, FleetCA]:
    """A server directory with one valid and one revoked device identity."""
    server = Server(tmp_path / "server").init()
    ca = server.ca
    ca.issue(VALID)
    ca.issue(REVOKED)
    ca.revoke(REVOKED)
    return server, ca


def test_an_ended_crl_locks_every_device_out_until_crl_renew_resigns_it(tmp_path, capsys):
    server, ca = _fleet_ca(tmp_path)
    revoked_on = {r.serial_number: r.revocation_date_utc for r in ca.crl()}
    short = ca.write_crl(dt.timedelta(seconds=6))  # as if its 30 days were nearly over
    ends = short.next_update_utc
    # a production-like broker: its own configuration directory, as broker-config writes
    etc = tmp_path / "etc-mosquitto"
    broker = Broker(etc, ca).start()
    try:
        assert admitted(ca, broker.port, VALID)
        assert not admitted(ca, broker.port, REVOKED)

        time.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds()) + 1)
        assert not admitted(ca, broker.port, VALID), \
            "the broker let a device in past the CRL's nextUpdate: the outage is not reproduced"

        capsys.readouterr()
        assert main(["crl-renew", "--server", str(server.directory), "--broker-dir", str(etc),
                     "--broker-pid", str(etc / "mosquitto.pid")]) == 0
        out = capsys.readouterr().out
        assert "CRL re-signed" in out and f"{etc / 'crl.pem'}: written" in out
        assert "sent SIGHUP" in out

        deadline = time.monotonic() + 10
        while not admitted(ca, broker.port, VALID):  # the broker rereads it on SIGHUP
            assert time.monotonic() < deadline, broker.log.read_text()[-2000:]
            time.sleep(0.2)
        assert not admitted(ca, broker.port, REVOKED), "renewal dropped a revocation"
    finally:
        broker.stop()
    renewed = ca.crl()
    assert renewed is not None and (etc / "crl.pem").read_bytes() == ca.crl_path.read_bytes()
    assert crl_number(renewed) == crl_number(short) + 1
    assert {r.serial_number: r.revocation_date_utc for r in renewed} == revoked_on
    assert renewed.next_update_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=CRL_DAYS - 1)


def test_crl_renew_resigns_only_when_due_and_replaces_each_broker_copy_whole(tmp_path, capsys):
    server, ca = _fleet_ca(tmp_path)
    broker_dir = tmp_path / "broker-a"
    broker_dir.mkdir()
    (broker_dir / "crl.pem").write_bytes(ca.crl_path.read_bytes())
    os.chmod(broker_dir / "crl.pem", 0o640)
    before = ca.crl_path.read_bytes()

    # a fresh CRL is left alone, and a current copy is not rewritten
    assert main(["crl-renew", "--server", str(server.directory),
                 "--broker-dir", str(broker_dir)]) == 0
    out = capsys.readouterr().out
    assert "CRL re-signed" not in out and "already current" in out
    assert ca.crl_path.read_bytes() == before

    # due once fewer than CRL_RENEW_DAYS are left, or when it lists other serials
    now = dt.datetime.now(dt.UTC)
    assert ca.crl_renewal_due(now + dt.timedelta(days=CRL_DAYS - CRL_RENEW_DAYS - 1)) is None
    assert "ends in" in ca.crl_renewal_due(now + dt.timedelta(days=CRL_DAYS - CRL_RENEW_DAYS + 1))
    assert ca.renew_crl_if_due(now=now + dt.timedelta(days=CRL_DAYS - 5)) is not None
    assert crl_number(ca.crl()) == crl_number(x509_crl(before)) + 1
    (ca.directory / "revoked.txt").write_text("")  # out of step with the CRL
    assert "revoked.txt" in ca.crl_renewal_due()
    ca.issue(REVOKED)
    ca.revoke(REVOKED)
    assert ca.crl_renewal_due() is None

    # --force re-signs; the copy is replaced whole, keeping its mode, no temporary left
    assert main(["crl-renew", "--server", str(server.directory), "--broker-dir", str(broker_dir),
                 "--force"]) == 0
    out = capsys.readouterr().out
    assert "CRL re-signed (forced)" in out and "reload each broker" in out
    assert (broker_dir / "crl.pem").read_bytes() == ca.crl_path.read_bytes()
    assert (broker_dir / "crl.pem").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in broker_dir.iterdir()) == ["crl.pem"]

    # a pid file naming something other than Mosquitto is not signalled
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "stale.pid").write_text(f"{sleeper.pid}\n")
        assert main(["crl-renew", "--server", str(server.directory), "--force",
                     "--broker-pid", str(tmp_path / "stale.pid")]) == 1
        assert "not mosquitto" in capsys.readouterr().err
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(SystemExit):
        main(["crl-renew"])  # the server directory is never guessed


def x509_crl(pem: bytes):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_crl(pem)


def test_every_tool_opening_the_server_warns_when_the_crl_is_near_its_end(tmp_path, capsys):
    from host_tools.fleet.server import open_server

    server, ca = _fleet_ca(tmp_path)
    open_server(server.directory)
    assert "warning" not in capsys.readouterr().err  # quiet while all is well

    ca.write_crl(dt.timedelta(days=5))  # the daily renewal has not run for weeks
    open_server(server.directory)
    err = capsys.readouterr().err
    assert "wearsafe: warning: the CRL" in err and "ends in 4 days" in err
    assert f"wearsafe crl-renew --server {server.directory}" in err

    # a tool's own run (export of a device never provisioned fails, the warning is there)
    assert main(["export", "--server", str(server.directory), "--device", VALID]) == 1
    assert "wearsafe: warning: the CRL" in capsys.readouterr().err

    # the broker's copy counts too: renewed at the CA but never copied to the broker
    broker_dir = server.broker_dir
    broker_dir.mkdir(exist_ok=True)
    (broker_dir / "crl.pem").write_bytes(ca.crl_path.read_bytes())
    ca.write_crl()
    open_server(server.directory)
    err = capsys.readouterr().err
    assert "the CRL the broker in" in err and "is not the CA's current CRL" in err
    assert main(["crl-renew", "--server", str(server.directory),
                 "--broker-dir", str(broker_dir)]) == 0
    open_server(server.directory)
    assert "warning" not in capsys.readouterr().err
