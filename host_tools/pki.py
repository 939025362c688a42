"""The fleet's X.509 PKI: a P-256 CA, the broker's server certificate, client
certificates for devices and the ingest, and the CRL the broker checks.

Layout of a PKI directory (0700; every private key 0600, never printed):

    ca.key, ca.crt          the fleet CA
    <name>.key, <name>.crt  an identity it issued (CN = name)
    revoked.txt             serial numbers revoked, one per line (hex)
    crl.pem                 the CRL, re-signed at every revocation
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from host_tools.paths import ToolError

CA_DAYS = 3650
LEAF_DAYS = 825


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FleetCA:
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def open_or_create(cls, directory: Path, name: str = "wearsafe fleet CA") -> FleetCA:
        ca = cls(directory)
        if (directory / "ca.key").exists() or ca.cert_path.exists():
            return ca.check()  # half a CA is an error: a new one would orphan every device
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
        except OSError as e:
            raise ToolError(f"cannot create the CA directory {directory}: {e.strerror}") from e
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(directory / "ca.key", _pem_key(key))  # last: its presence means done
        ca.write_crl()
        return ca

    def check(self) -> FleetCA:
        for name in ("ca.key", "ca.crt"):
            if not (self.directory / name).is_file():
                raise ToolError(f"the fleet CA in {self.directory} is incomplete ({name} "
                                "missing): restore it from your backup; a new CA would not "
                                "be trusted by the devices and the broker already set up")
        return self

    def _key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def issue(self, cn: str, *, server: bool = False, days: float = LEAF_DAYS,
              not_before: dt.datetime | None = None) -> tuple[Path, Path]:
        """A P-256 key and a certificate for `cn`: (key path, certificate path).

        Client certificates (devices, the ingest) carry clientAuth; the broker's
        carries serverAuth and names localhost and 127.0.0.1.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - dt.timedelta(minutes=5)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(cn))
                   .issuer_name(self.certificate().subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        cert = builder.sign(self._key(), hashes.SHA256())
        key_path, cert_path = self.directory / f"{cn}.key", self.directory / f"{cn}.crt"
        write_private(key_path, _pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    def revoked(self) -> list[int]:
        path = self.directory / "revoked.txt"
        return [int(s, 16) for s in path.read_text().split()] if path.exists() else []

    def revoke(self, cn: str) -> None:
        """Revoke the certificate issued to `cn` and re-sign the CRL."""
        cert_path = self.directory / f"{cn}.crt"
        if not cert_path.exists():
            raise ToolError(f"no certificate issued to {cn} in {self.directory}")
        serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
        with open(self.directory / "revoked.txt", "a") as f:
            f.write(f"{serial:x}\n")
        self.write_crl()

    def write_crl(self) -> None:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate().subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + dt.timedelta(days=30)))
        for serial in self.revoked():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now).build())
        crl = builder.sign(self._key(), hashes.SHA256())
        tmp = self.crl_path.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, self.crl_path)


def der(pem_path: Path) -> bytes:
    """A PEM certificate or key as DER, the form the device loads."""
    data = pem_path.read_bytes()
    if b"CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    key = serialization.load_pem_private_key(data, None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
