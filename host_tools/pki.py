"""The fleet's X.509 PKI: a P-256 CA, the broker's server certificate, client
certificates for devices and the ingest, and the CRL the broker checks.

Layout of a PKI directory (0700; every private key 0600, never printed):

    ca.key, ca.crt          the fleet CA
    <name>.key, <name>.crt  an identity it issued (CN = name)
    localhost.key, .crt     the broker's: serverAuth, its subjectAltName lists every
                            host name and address devices reach the broker by
    revoked.txt             serial numbers revoked, one per line (hex)
    crl.pem                 the CRL, re-signed at every revocation

A device checks the broker's host name against that list (CERT_REQUIRED,
server_hostname = its broker_host), so the list only grows: a name leaves it
only when the operator deletes the broker's key and certificate and names
the broker again (`wearsafe broker-config --broker-name ...`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from host_tools.paths import ToolError

CA_DAYS = 3650
LEAF_DAYS = 825
BROKER_CN = "localhost"  # the broker's identity: localhost.key, localhost.crt
# Always in the broker's certificate: the tools on the broker's own host (the
# ingest, publish-image, the sim and the tests) reach it by these.
LOCAL_NAMES = ("localhost", "127.0.0.1")
RENEW_DAYS = 30  # a broker certificate this close to its end is re-issued

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # a stale .tmp keeps its mode through O_CREAT
        f.write(data)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a broker rereading it never sees half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def host_name(text: str) -> str:
    """A host name or IP address a device may be given as its broker, normalised
    (DNS names in lower case, addresses in their canonical form); ToolError why not."""
    if not text.strip():
        raise ToolError("an empty broker name: give the DNS name or IP address the devices "
                        "reach the broker by")
    if "*" in text:
        raise ToolError(f"broker name {text!r}: wildcards are not accepted; give each host "
                        "name the devices use (a wildcard certificate would vouch for every "
                        "host in the domain)")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ToolError(f"broker name {text!r}: an address with a zone (%{address.scope_id}"
                            ") cannot be certified; give the address without it")
        return str(address)
    if re.fullmatch(r"[0-9.]+", text) or ":" in text or text.startswith("["):
        raise ToolError(f"broker name {text!r} is not a valid IP address: give IPv4 as four "
                        "numbers 0-255 (e.g. 192.168.1.10), IPv6 without brackets, or a DNS "
                        "name")
    name = text.lower()
    labels = name.split(".")
    if (not name.isascii() or len(name) > 253 or labels[-1].isdigit()
            or not all(_LABEL.fullmatch(label) for label in labels)):
        raise ToolError(f"broker name {text!r} is not a valid host name: dot-separated labels "
                        "of 1-63 letters, digits and hyphens, none starting or ending with a "
                        "hyphen, no trailing dot (an internationalised name in its xn-- form)")
    return name


def broker_names(names: Iterable[str] = ()) -> list[str]:
    """LOCAL_NAMES then `names`, each checked (host_name) and given once."""
    out = list(LOCAL_NAMES)
    for name in names:
        name = host_name(name)
        if name not in out:
            out.append(name)
    return out


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate's subjectAltName lists."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.value.lower() if isinstance(name, x509.DNSName) else str(name.value)
            for name in san if isinstance(name, x509.DNSName | x509.IPAddress)]


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

    def issue(self, cn: str, *, server: bool = False, names: Iterable[str] = (),
              days: float = LEAF_DAYS,
              not_before: dt.datetime | None = None) -> tuple[Path, Path]:
        """A P-256 key and a certificate for `cn`: (key path, certificate path).

        Client certificates (devices, the ingest) carry clientAuth; a server's
        carries serverAuth and names localhost, 127.0.0.1, `cn` and `names`
        (host names and IP addresses, checked before anything is written).
        """
        san = broker_names([cn, *names]) if server else []
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
                [_general_name(name) for name in san]), False)
        cert = builder.sign(self._key(), hashes.SHA256())
        key_path, cert_path = self.directory / f"{cn}.key", self.directory / f"{cn}.crt"
        write_private(key_path, _pem_key(key))
        write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    # -- the broker's certificate ---------------------------------------------

    @property
    def broker_cert_path(self) -> Path:
        return self.directory / f"{BROKER_CN}.crt"

    @property
    def broker_key_path(self) -> Path:
        return self.directory / f"{BROKER_CN}.key"

    def broker_certificate(self) -> x509.Certificate | None:
        """The broker's certificate, None when there is none (yet) or it is unreadable."""
        try:
            return x509.load_pem_x509_certificate(self.broker_cert_path.read_bytes())
        except (OSError, ValueError):
            return None

    def certified_broker_names(self) -> list[str] | None:
        """The names the broker's certificate vouches for; None when there is none."""
        cert = self.broker_certificate()
        return None if cert is None else certificate_names(cert)

    def _broker_certificate_usable(self, cert: x509.Certificate) -> bool:
        """Its key is there and matches, this CA signed it, and it is not near its end."""
        try:
            key = serialization.load_pem_private_key(self.broker_key_path.read_bytes(), None)
            cert.verify_directly_issued_by(self.certificate())
        except (OSError, ValueError, TypeError, InvalidSignature):
            return False
        same_key = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
            cert.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        return same_key and cert.not_valid_after_utc - _now() > dt.timedelta(days=RENEW_DAYS)

    def ensure_broker_certificate(self, names: Iterable[str] = ()) -> bool:
        """Make the broker's certificate name LOCAL_NAMES, `names` and every name it
        already names (devices in the field may use them): re-issued, with its key,
        when it lacks one of them or is unusable (see _broker_certificate_usable).
        True when it was (re-)issued. Bad names: ToolError, nothing written."""
        wanted = broker_names(names)
        cert = self.broker_certificate()
        certified = certificate_names(cert) if cert is not None else []
        if (cert is not None and set(wanted) <= set(certified)
                and self._broker_certificate_usable(cert)):
            return False
        keep = [n for n in certified if _certifiable(n)]  # in their order, new ones after
        self.issue(BROKER_CN, server=True, names=[*keep, *wanted])
        return True

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


def _certifiable(name: str) -> bool:
    try:
        host_name(name)
    except ToolError:
        return False
    return True


def der(pem_path: Path) -> bytes:
    """A PEM certificate or key as DER, the form the device loads."""
    data = pem_path.read_bytes()
    if b"CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    key = serialization.load_pem_private_key(data, None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
