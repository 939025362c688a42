"""The fleet's X.509 PKI: a P-256 CA, the broker's server certificate, client
certificates for devices and the ingest, and the CRL the broker checks.

Layout of a PKI directory (0700; every private key 0600, never printed):

    ca.key, ca.crt          the fleet CA
    <name>.key, <name>.crt  an identity it issued (CN = name)
    localhost.key, .crt     the broker's: serverAuth, its subjectAltName lists every
                            host name and address devices reach the broker by
    revoked.txt             serial numbers revoked, one per line (hex)
    crl.pem                 the CRL, re-signed at every revocation and by `wearsafe
                            crl-renew` (scheduled daily) before its nextUpdate

The keys that can mint devices or publish updates (ca.key, release.key) may
live off this directory, where the ingest runs: `wearsafe keys-offline`
moves them into another directory, which the commands that sign or release
are then given as $WEARSAFE_OFFLINE_KEYS.

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
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from host_tools.paths import ToolError

# Lifetimes. A certificate that ends while its holder is still in service is an
# outage, not a security gain: a device whose certificate has expired cannot
# connect, nothing renews it over the air, and the way back is to reprovision
# it on a bench; devices provisioned in the same week would all stop on the
# same day. Revocation (the CRL), not expiry, is how an identity is withdrawn.
DEVICE_DAYS = 10 * 365 + 3  # a wearable's service life, 10 years: a client certificate
#                             (device, ingest, release) never ends before its holder does
CA_DAYS = 2 * DEVICE_DAYS  # 20 years: outlives every device certificate of its first 10
#   (a certificate is never issued past the CA's own end: see FleetCA.issue)
LEAF_DAYS = 825  # the broker's certificate: re-issued by `wearsafe broker-config` when
#                  RENEW_DAYS are left; devices pin the CA, not this certificate
CRL_DAYS = 30  # a CRL's nextUpdate: past it, Mosquitto (OpenSSL's CRL check) refuses
#                EVERY client, so `wearsafe crl-renew` re-signs it well before
CRL_RENEW_DAYS = 20  # crl-renew (run daily) re-signs a CRL with fewer days left than this
# The tools warn (FleetCA.warn_expiring) when these are this close to their end:
CRL_WARN_DAYS = 14  # the CRL: its daily renewal has been failing for about a week
CA_WARN_DAYS = 365  # the CA: a new one means reprovisioning or updating every device
CLIENT_WARN_DAYS = 90  # device and service certificates: reprovision them at service
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
        f.flush()
        os.fsync(f.fileno())  # on disk before it replaces anything
    os.replace(tmp, path)


@contextmanager
def private_temp_file(data: bytes, name: str) -> Iterator[Path]:
    """`data` in a file (0600) of a private temporary directory (0700) for one step
    (a tool that reads a secret from a file); removed with it however the step ends."""
    with tempfile.TemporaryDirectory(prefix="wearsafe-") as tmp:
        path = Path(tmp) / name
        write_private(path, data)
        yield path


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (0700), made if need be."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as e:
        raise ToolError(f"cannot create {path}: {e.strerror}") from e
    return path


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


def _name(cn: str, unit: str | None = None) -> x509.Name:
    unit_attr = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)] if unit else []
    return x509.Name([*unit_attr, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


OFFLINE_KEYS_ENV = "WEARSAFE_OFFLINE_KEYS"
OFFLINE_KEYS = ("ca.key", "release.key")  # what can mint a device or publish an update


@dataclass
class FleetCA:
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    def private_key_path(self, name: str) -> Path:
        """Where the private key `name` (ca.key, <identity>.key) is: the offline-keys
        directory for OFFLINE_KEYS when $WEARSAFE_OFFLINE_KEYS names one, else here."""
        offline = os.environ.get(OFFLINE_KEYS_ENV)
        return Path(offline) / name if offline and name in OFFLINE_KEYS else self.directory / name

    @property
    def offline(self) -> bool:
        """Whether this directory holds no key that can mint a device or publish an update."""
        return not any((self.directory / name).exists() for name in OFFLINE_KEYS)

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def open_or_create(cls, directory: Path, name: str = "wearsafe fleet CA") -> FleetCA:
        ca = cls(directory)
        if ca.private_key_path("ca.key").exists() or ca.cert_path.exists():
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
        write_private(ca.private_key_path("ca.key"), _pem_key(key))  # last: it means done
        ca.write_crl()
        return ca

    def check(self) -> FleetCA:
        """ca.crt must be here; ca.key here or in the offline-keys directory (checked
        when something is signed: the ingest never signs)."""
        if not self.cert_path.is_file():
            raise ToolError(f"the fleet CA in {self.directory} is incomplete (ca.crt "
                            "missing): restore it from your backup; a new CA would not "
                            "be trusted by the devices and the broker already set up")
        return self

    def _key(self) -> ec.EllipticCurvePrivateKey:
        path = self.private_key_path("ca.key")
        if not path.is_file():
            raise ToolError(f"the fleet CA's private key is not in {path.parent}: it lives "
                            f"off the server directory; set {OFFLINE_KEYS_ENV} to the "
                            "directory `wearsafe keys-offline` moved it to")
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def issue(self, cn: str, *, server: bool = False, names: Iterable[str] = (),
              days: float | None = None, not_before: dt.datetime | None = None,
              into: Path | None = None, board_class: str | None = None) -> tuple[Path, Path]:
        """A P-256 key and a certificate for `cn`: (key path, certificate path), in
        the CA's directory or `into` another one. A device's certificate names its
        `board_class` (subject OU): the broker's ACL lets it read that class's updates.

        Client certificates (devices, the ingest) carry clientAuth; a server's
        carries serverAuth and names localhost, 127.0.0.1, `cn` and `names`
        (host names and IP addresses, checked before anything is written).
        It lasts `days`: by default DEVICE_DAYS for a client, LEAF_DAYS for a
        server; never past the CA's own end (FleetCA.status notes when that cuts it).
        """
        san = broker_names([cn, *names]) if server else []
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - dt.timedelta(minutes=5)
        days = days if days is not None else LEAF_DAYS if server else DEVICE_DAYS
        end = min(start + dt.timedelta(days=days), self.certificate().not_valid_after_utc)
        if end <= start:
            raise ToolError(f"the fleet CA in {self.directory} has ended: it can certify "
                            "nothing (see `wearsafe pki-status`)")
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(cn, board_class))
                   .issuer_name(self.certificate().subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_general_name(name) for name in san]), False)
        cert = builder.sign(self._key(), hashes.SHA256())
        out = into or self.directory
        key_path = out / f"{cn}.key" if into else self.private_key_path(f"{cn}.key")
        cert_path = out / f"{cn}.crt"
        write_private(key_path, _pem_key(key))
        install_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
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

    def issued(self) -> Iterator[tuple[Path, x509.Certificate]]:
        """(path, certificate) of each certificate this CA's directory holds besides the
        CA's own; unreadable ones are left out."""
        for path in sorted(self.directory.glob("*.crt")):
            if path == self.cert_path:
                continue
            try:
                yield path, x509.load_pem_x509_certificate(path.read_bytes())
            except (OSError, ValueError):
                continue

    def board_classes(self) -> dict[str, str]:
        """Device id -> board class, for every certificate of this CA's directory that
        names a board class and is neither revoked nor expired."""
        revoked, now, out = set(self.revoked()), _now(), {}
        for _, cert in self.issued():
            unit = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if unit and cn and cert.serial_number not in revoked \
                    and cert.not_valid_after_utc > now:
                out[str(cn[0].value)] = str(unit[0].value)
        return out

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

    # -- the CRL ------------------------------------------------------------------
    # Mosquitto checks every client against it (OpenSSL's X509_V_FLAG_CRL_CHECK),
    # its nextUpdate included: once that passes, every device is refused, so the
    # CRL is re-signed on a schedule (`wearsafe crl-renew`), not only on revocation.

    def crl(self) -> x509.CertificateRevocationList | None:
        """The CRL as written; None when it is missing, unreadable or not this CA's."""
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            public_key = self.certificate().public_key()
        except (OSError, ValueError):
            return None
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return None
        return crl if crl.is_signature_valid(public_key) else None

    def write_crl(self, lifetime: dt.timedelta | None = None) -> x509.CertificateRevocationList:
        """Sign the CRL anew and write it whole: every serial in revoked.txt (each
        keeps the revocation date the CRL before gave it), the next CRL number,
        thisUpdate now and nextUpdate `lifetime` (default CRL_DAYS) from now."""
        now = _now()
        before = self.crl()
        dates = {r.serial_number: r.revocation_date_utc for r in before or ()}
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.certificate().subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + (lifetime or dt.timedelta(days=CRL_DAYS)))
                   .add_extension(x509.CRLNumber(crl_number(before) + 1), critical=False))
        for serial in dict.fromkeys(self.revoked()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(dates.get(serial, now)).build())
        crl = builder.sign(self._key(), hashes.SHA256())
        install_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def crl_renewal_due(self, now: dt.datetime | None = None) -> str | None:
        """Why the CRL must be re-signed now, or None when it need not be yet."""
        crl = self.crl()
        if crl is None:
            return f"{self.crl_path} is missing, unreadable or not signed by this CA"
        if {r.serial_number for r in crl} != set(self.revoked()):
            return "it does not list exactly the certificates revoked.txt lists"
        ends = crl.next_update_utc
        if ends is None:
            return "it has no nextUpdate"
        if ends - (now or _now()) < dt.timedelta(days=CRL_RENEW_DAYS):
            return f"it ends {_in_days(ends, now)} (renewed when fewer than {CRL_RENEW_DAYS} " \
                   "days are left)"
        return None

    def renew_crl_if_due(self, force: bool = False, now: dt.datetime | None = None,
                         lifetime: dt.timedelta | None = None) -> str | None:
        """Re-sign the CRL when crl_renewal_due says why, or when `force`d: the
        reason it was re-signed, or None when it was left as it is."""
        why = self.crl_renewal_due(now) or ("forced" if force else None)
        if why is not None:
            self.write_crl(lifetime)
        return why

    # -- what ends when ---------------------------------------------------------

    def status(self, broker_dirs: Iterable[Path] = (),
               now: dt.datetime | None = None) -> PkiStatus:
        """The end of everything dated here: the CA, the broker's certificate, the
        CRL (and its copy in each of `broker_dirs` holding one), the service
        identities, and the device certificates (16 hex digits) not revoked."""
        now = now or _now()
        server = self.directory.parent
        ca = self.certificate()
        out = PkiStatus(now)
        out.items.append(Expiry(
            "fleet CA", self.cert_path, ca.not_valid_after_utc, CA_WARN_DAYS,
            "plan the CA's renewal (same key, new validity) or a new fleet CA, and bring "
            "it to the broker and every device before then: see docs/SECURITY.md"))
        if ca.not_valid_after_utc - now < dt.timedelta(days=DEVICE_DAYS):
            out.notes.append(f"certificates issued now end with the CA on "
                             f"{_date(ca.not_valid_after_utc)}, before a device's service "
                             f"life ({DEVICE_DAYS} days)")
        broker = self.broker_certificate()
        if broker is None:
            out.notes.append(f"no broker certificate in {self.directory} yet (`wearsafe "
                             "broker-config` issues it)")
        else:
            out.items.append(Expiry(
                "broker certificate", self.broker_cert_path, broker.not_valid_after_utc,
                RENEW_DAYS, f"run `wearsafe broker-config --server {server} --out DIR` for "
                "your broker's configuration DIR, then reload the broker (SIGHUP)"))
        crl = self.crl()
        renew = f"run `wearsafe crl-renew --server {server} --broker-dir DIR` (DIR: your " \
                "broker's configuration; schedule it daily, see README) and reload the broker"
        out.items.append(Expiry("CRL", self.crl_path,
                                crl.next_update_utc if crl is not None else None,
                                CRL_WARN_DAYS, renew,
                                f"number {crl_number(crl)}, {len(crl)} revoked"
                                if crl is not None else ""))
        for directory in dict.fromkeys(broker_dirs):
            copy = directory / self.crl_path.name
            try:
                data = copy.read_bytes()
            except OSError:
                continue
            try:
                ends = x509.load_pem_x509_crl(data).next_update_utc
            except ValueError:
                ends = None
            out.items.append(Expiry(f"CRL the broker in {directory} reads", copy, ends,
                                    CRL_WARN_DAYS, renew))
            if crl is not None and data != self.crl_path.read_bytes():
                out.stale.append(copy)
        revoked = set(self.revoked())
        for path, cert in self.issued():
            if path == self.broker_cert_path:
                continue
            if cert.serial_number in revoked:
                out.revoked += 1
            elif re.fullmatch(r"[0-9a-f]{16}", path.stem):
                out.devices[path.stem] = cert.not_valid_after_utc
            else:
                out.items.append(Expiry(
                    f"service identity {path.stem}", path, cert.not_valid_after_utc,
                    CLIENT_WARN_DAYS, f"delete {path} and its .key: the tools issue the "
                    "identity anew on first use"))
        return out

    def warn_expiring(self, *broker_dirs: Path) -> list[str]:
        """Print to stderr a warning for each credential near its end (status); the
        warnings. Every tool that opens a server directory calls it; it never
        raises: a check that fails is itself the warning."""
        try:
            found = self.status(broker_dirs).warnings()
        except Exception as e:  # a warning must not stop the tool
            found = [f"cannot check when the credentials in {self.directory} end: {e!r}"]
        for warning in found:
            print(f"wearsafe: warning: {warning}", file=sys.stderr, flush=True)
        return found


def crl_number(crl: x509.CertificateRevocationList | None) -> int:
    """A CRL's number (its CRLNumber extension), 0 for none."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number) \
            if crl is not None else 0
    except x509.ExtensionNotFound:
        return 0


def _date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _left(when: dt.datetime, now: dt.datetime | None = None) -> str:
    """How long until `when`: 'N days' (hours, then seconds, when less); '' when past."""
    left = when - (now or _now())
    seconds = left.total_seconds()
    return "" if seconds <= 0 else f"{left.days} days" if left.days else \
        f"{int(seconds // 3600)} hours" if seconds >= 3600 else f"{int(seconds)} seconds"


def _in_days(when: dt.datetime, now: dt.datetime | None = None) -> str:
    """'in N days, on DATE', or 'ended on DATE'."""
    left = _left(when, now)
    return f"in {left}, on {_date(when)}" if left else f"ended on {_date(when)}"


@dataclass(frozen=True)
class Expiry:
    """One dated credential: what it is, its file, when it ends (None: missing or
    unreadable), how many days ahead that is worth a warning, and what to do."""
    what: str
    path: Path
    ends: dt.datetime | None
    warn_days: float
    fix: str
    detail: str = ""

    def warning(self, now: dt.datetime) -> str | None:
        if self.ends is None:
            return f"the {self.what} ({self.path}) is missing or unreadable: {self.fix}"
        if self.ends <= now:
            return f"the {self.what} ({self.path}) has ENDED, on {_date(self.ends)}: {self.fix}"
        if self.ends - now < dt.timedelta(days=self.warn_days):
            return f"the {self.what} ({self.path}) ends {_in_days(self.ends, now)}: {self.fix}"
        return None


@dataclass
class PkiStatus:
    """FleetCA.status: the operator's view (lines) and the tools' warnings."""
    now: dt.datetime
    items: list[Expiry] = field(default_factory=list)
    devices: dict[str, dt.datetime] = field(default_factory=dict)  # not revoked
    revoked: int = 0
    stale: list[Path] = field(default_factory=list)  # broker copies of an older CRL
    notes: list[str] = field(default_factory=list)

    def devices_ending(self, days: float = CLIENT_WARN_DAYS) -> dict[str, dt.datetime]:
        """Device certificates that end within `days` and have not ended yet."""
        soon = self.now + dt.timedelta(days=days)
        return {d: end for d, end in self.devices.items() if self.now < end <= soon}

    def devices_ended(self) -> int:
        return sum(end <= self.now for end in self.devices.values())

    def warnings(self) -> list[str]:
        out = [w for w in (item.warning(self.now) for item in self.items) if w]
        out += [f"{path} is not the CA's current CRL (a revocation or a renewal has not "
                f"reached that broker): run `wearsafe crl-renew` with --broker-dir "
                f"{path.parent} and reload the broker" for path in self.stale]
        ending = self.devices_ending()
        if ending:
            out.append(f"{len(ending)} device certificate(s) end within {CLIENT_WARN_DAYS} "
                       f"days, the first {_in_days(min(ending.values()), self.now)}: "
                       "reprovision those devices (`wearsafe pki-status` lists them)")
        return out

    def lines(self) -> list[str]:
        """One line per credential, then the devices' figures."""
        out = []
        for item in self.items:
            left = _left(item.ends, self.now) if item.ends is not None else ""
            when = "MISSING or unreadable" if item.ends is None else \
                f"until {_date(item.ends)} ({left} left)" if left else \
                f"ENDED on {_date(item.ends)}"
            out.append(f"{item.what}: {item.path.name} {when}"
                       f"{f'; {item.detail}' if item.detail else ''}")
        ending = self.devices_ending()
        out.append(f"device certificates: {len(self.devices)} issued and not revoked, "
                   f"{len(ending)} end within {CLIENT_WARN_DAYS} days, "
                   f"{self.devices_ended()} ended; {self.revoked} revoked")
        out += [f"  ends {_date(end)}: {device}"
                for device, end in sorted(ending.items(), key=lambda i: i[1])]
        out += [f"note: {note}" for note in self.notes]
        return out


def install_public(path: Path, data: bytes) -> bool:
    """Put `data` at `path` whole: written beside it, synced and renamed over it,
    so a broker rereading it (SIGHUP) sees the old file or the new one, never half.
    The new file keeps the mode, owner and group of the one it replaces (a broker
    that dropped root to its own user must still read it). False, and nothing
    written, when `path` holds `data` already."""
    try:
        before = path.stat()
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        before = None
    tmp = path.with_name(f".{path.name}.tmp")
    mode = stat.S_IMODE(before.st_mode) if before else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if before and (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), before.st_uid, before.st_gid)
                except PermissionError:
                    if not mode & stat.S_IROTH:
                        raise ToolError(f"{path} belongs to uid {before.st_uid} gid "
                                        f"{before.st_gid} and others may not read it: "
                                        "replace it as root or as its owner, or the broker "
                                        "could not read the new one") from None
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def move_private(source: Path, target: Path) -> bool:
    """Move a private key into `target` (its directory made 0700, the file 0600) and
    remove `source` once the copy is on disk; False when there is none to move.
    A key already at `target` is never overwritten."""
    if not source.is_file():
        return False
    if target.exists():
        raise ToolError(f"{target} exists already: move or remove it first (nothing moved)")
    private_dir(target.parent)
    write_private(target, source.read_bytes())
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name too is on disk before the only other copy goes
    finally:
        os.close(dir_fd)
    source.unlink()
    return True


def install_crl(ca: FleetCA, broker_dirs: Iterable[Path]) -> list[tuple[Path, bool]]:
    """Copy the CA's CRL into each broker configuration directory (install_public):
    (the copy, whether it changed). A broker uses it once reloaded."""
    data = ca.crl_path.read_bytes()
    out = []
    for directory in dict.fromkeys(broker_dirs):
        if not directory.is_dir():
            raise ToolError(f"{directory} is not a directory: give the broker's configuration "
                            "directory (where `wearsafe broker-config --out` wrote crl.pem)")
        out.append((directory / ca.crl_path.name,
                    install_public(directory / ca.crl_path.name, data)))
    return out


def reload_broker_pid(pid_file: Path) -> int:
    """Send SIGHUP to the Mosquitto whose process id `pid_file` holds: it rereads its
    configuration, certificates and CRL. Its pid; ToolError when that cannot be."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise ToolError(f"no process id in {pid_file}: {e}") from None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        raise ToolError(f"process {pid} (from {pid_file}) is not running: start the broker, "
                        "it reads the CRL when it starts") from None
    except OSError:
        name = "mosquitto"  # no /proc to ask: trust the pid file
    if "mosquitto" not in name:
        raise ToolError(f"process {pid} (from {pid_file}) is {name!r}, not mosquitto: a stale "
                        "pid file? Reload the broker yourself (systemctl reload mosquitto)")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ToolError(f"process {pid} (from {pid_file}) is not running") from None
    except PermissionError:
        raise ToolError(f"not allowed to signal the broker (pid {pid}): run as its user or "
                        "root, or `systemctl reload mosquitto`") from None
    return pid


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
