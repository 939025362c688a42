"""Credentials outlive the devices (issue 13, finding 10).

Device certificates used to end after 825 days: two years in, every device
provisioned in the same week stopped connecting on the same day, and only a
reflash brought each back. Now a device certificate lasts the device's service
life, the CA outlives it, nothing is issued past the CA's end, and the tools
warn long before anything ends (`wearsafe pki-status`, and every tool that
opens a server directory).
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from host_tools.cli import main
from host_tools.fleet.broker import Broker
from host_tools.fleet.pki import (
    CA_DAYS,
    CA_WARN_DAYS,
    CLIENT_WARN_DAYS,
    CRL_DAYS,
    CRL_WARN_DAYS,
    DEVICE_DAYS,
    RENEW_DAYS,
    FleetCA,
)
from host_tools.fleet.server import Server
from tests.hostile import admitted

SERVICE_LIFE = dt.timedelta(days=10 * 365)  # what a wearable in the field is expected to last
YEAR = dt.timedelta(days=365)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_provisioned_device_certificate_lasts_its_service_life_and_the_ca_longer(tmp_path,
                                                                                   capsys):
    server = tmp_path / "server"
    assert main(["provision", "--board", "esp32_devkitc", "--out", str(tmp_path / "bundle"),
                 "--server", str(server)]) == 0
    device = x509.load_der_x509_certificate((tmp_path / "bundle/certs/device.der").read_bytes())
    ca = x509.load_der_x509_certificate((tmp_path / "bundle/certs/ca.der").read_bytes())
    life = device.not_valid_after_utc - device.not_valid_before_utc
    assert life >= SERVICE_LIFE, f"a device certificate lasts {life.days} days"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= 2 * SERVICE_LIFE
    assert ca.not_valid_after_utc >= device.not_valid_after_utc + SERVICE_LIFE
    assert DEVICE_DAYS >= 3650 and CA_DAYS >= 2 * DEVICE_DAYS
    # the service identities (ingest, release) live as long; the broker's is re-issued
    ingest = x509.load_pem_x509_certificate((server / "pki/ingest.crt").read_bytes())
    assert ingest.not_valid_after_utc - ingest.not_valid_before_utc >= SERVICE_LIFE


def test_devices_provisioned_years_ago_still_connect_to_the_real_broker(tmp_path):
    """The fleet of finding 10, two and a half and nine years on: each device keeps
    connecting on the certificate it was given, with no reflash."""
    server = Server(tmp_path / "server").init()
    ca = server.ca
    for cn, age in (("00000000000000a1", 2.5 * YEAR), ("00000000000000a2", 9 * YEAR)):
        ca.issue(cn, not_before=_now() - age)  # the default lifetime, issued back then
    broker = Broker(server.broker_dir, ca).start()
    try:
        assert admitted(ca, broker.port, "00000000000000a1"), \
            "a device 2.5 years in the field is locked out: its certificate has ended"
        assert admitted(ca, broker.port, "00000000000000a2")
    finally:
        broker.stop()


def _shorten_ca(ca: FleetCA, days: float) -> None:
    """Re-sign the CA's certificate (same key, same name) to end in `days`: a CA
    near its end, without waiting years."""
    old = ca.certificate()
    builder = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.subject)
               .public_key(old.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(old.not_valid_before_utc)
               .not_valid_after(_now() + dt.timedelta(days=days)))
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(ca._key(), hashes.SHA256())
    ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_no_certificate_is_issued_past_the_ca_and_a_ca_near_its_end_is_warned(tmp_path,
                                                                              capsys):
    from host_tools.fleet.server import open_server

    server = Server(tmp_path / "server").init()
    ca = server.ca
    _shorten_ca(ca, 200)
    _, cert_path = ca.issue("00000000000000b1")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.not_valid_after_utc == ca.certificate().not_valid_after_utc
    status = ca.status()
    assert any("before a device's service life" in note for note in status.notes)
    open_server(server.directory)
    err = capsys.readouterr().err
    assert "wearsafe: warning: the fleet CA" in err and "ends in 199 days" in err


def test_pki_status_lists_every_end_and_the_device_certificates_ending_soon(tmp_path, capsys):
    server = Server(tmp_path / "server").init()
    ca = server.ca
    ca.ensure_broker_certificate()
    ca.issue("0000000000000001")  # fine for its service life
    ca.issue("0000000000000002", days=30)  # ends within 90 days
    ca.issue("0000000000000003", days=1, not_before=_now() - dt.timedelta(days=5))  # ended
    ca.issue("0000000000000004")
    ca.revoke("0000000000000004")  # forgotten: not counted as a device to renew

    code = main(["pki-status", "--server", str(server.directory)])
    out = capsys.readouterr().out
    assert code == 1  # something needs attention
    for what in ("fleet CA: ca.crt until", "broker certificate: localhost.crt until",
                 "CRL: crl.pem until", "service identity ingest: ingest.crt until"):
        assert what in out, out
    assert (f"device certificates: 3 issued and not revoked, 1 end within {CLIENT_WARN_DAYS} "
            "days, 1 ended; 1 revoked") in out
    assert "0000000000000002" in out and "0000000000000001" not in out
    assert "warning: 1 device certificate(s) end within 90 days" in out

    fresh = Server(tmp_path / "fresh").init()
    fresh.ca.ensure_broker_certificate()
    assert main(["pki-status", "--server", str(fresh.directory)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_the_tools_warn_long_before_anything_ends_and_stay_quiet_otherwise(tmp_path, capsys):
    from host_tools.fleet.server import open_server

    server = Server(tmp_path / "server").init()
    ca = server.ca
    ca.ensure_broker_certificate()
    ca.issue("00000000000000e1")
    open_server(server.directory)
    assert capsys.readouterr().err == ""

    crl_signed = ca.crl().last_update_utc
    assert ca.status(now=crl_signed + dt.timedelta(days=CRL_DAYS - CRL_WARN_DAYS - 1)) \
        .warnings() == []  # renewal is due (crl-renew's business), no warning yet
    warnings = "\n".join(ca.status(now=crl_signed + dt.timedelta(days=CRL_DAYS - CRL_WARN_DAYS + 1))
                         .warnings())
    assert "the CRL" in warnings and "crl-renew" in warnings

    broker_end = ca.broker_certificate().not_valid_after_utc
    warnings = "\n".join(ca.status(now=broker_end - dt.timedelta(days=RENEW_DAYS - 1))
                         .warnings())
    assert "the broker certificate" in warnings and "wearsafe broker-config" in warnings

    ca_end = ca.certificate().not_valid_after_utc
    warnings = "\n".join(ca.status(now=ca_end - dt.timedelta(days=CA_WARN_DAYS - 1)).warnings())
    assert "the fleet CA" in warnings
    assert "has ENDED" in "\n".join(ca.status(now=ca_end + dt.timedelta(days=1)).warnings())

    device_end = x509.load_pem_x509_certificate(
        (ca.directory / "00000000000000e1.crt").read_bytes()).not_valid_after_utc
    warnings = "\n".join(ca.status(now=device_end - dt.timedelta(days=CLIENT_WARN_DAYS - 1))
                         .warnings())
    assert "1 device certificate(s) end within 90 days" in warnings

    # and through a tool: a broker certificate 20 days from its end
    ca.issue("localhost", server=True, days=20)
    open_server(server.directory)
    err = capsys.readouterr().err
    assert "wearsafe: warning: the broker certificate" in err and "ends in 19 days" in err


def test_a_missing_or_broken_pki_is_a_warning_not_a_crash(tmp_path, capsys):
    from host_tools.fleet.server import open_server

    server = Server(tmp_path / "server").init()
    server.ca.crl_path.write_text("not a CRL")
    open_server(server.directory)
    assert "the CRL" in capsys.readouterr().err
    (server.ca.directory / "00000000000000f1.crt").write_text("garbage")
    assert open_server(server.directory) is not None
