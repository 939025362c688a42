"""How fast the unix port's mbedTLS is here, against an ESP32: the C half of the
ESP32-speed model (esp32_speed.py calibrates the bytecode half).

The operation that dominates a device's TLS handshake is a P-256 ECDSA
verification (the broker's certificate, the broker's handshake signature). Its
time on an ESP32 is published: 172.71 ms (Mbed-TLS/TF-PSA-Crypto#873, ESP32 at
240 MHz, mbedTLS 3.6.6 with fixed-point ECP, the benchmark's ecdsa_verify
secp256r1), the mbedTLS the unix port carries (ssl.MBEDTLS_VERSION 3.6.6).

Here it is measured inside real handshakes, by difference: the unix port
opens sessions with two local servers that differ in one link of their
certificate chain (a leaf signed by the root; a leaf signed by an intermediate
the root signed), so the second costs exactly one more verification and one
more certificate to parse. The client's arithmetic is what it computes between
mbedTLS's reads and writes of records (the stream firmware/lib/wearsafe/link.py
_Serviced hands it); waits for the network are left out.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from host_tools.paths import ToolError, micropython

ESP32_VERIFY_MS = 172.71
PUBLISHED = "Mbed-TLS/TF-PSA-Crypto#873 (ESP32 at 240 MHz, mbedTLS 3.6.6, P-256 ecdsa_verify)"

# MicroPython: the stream mbedTLS reads and writes records through, noting the
# pieces of arithmetic between them (microseconds), as link._Serviced sees them.
NOTING = """
import io, time
pieces = []
left = [0]
class Noting(io.IOBase):
    def __init__(self, sock):
        self.sock = sock
    def _io(self, call, buf):
        pieces.append(time.ticks_diff(time.ticks_us(), left[0]))
        n = call(buf)
        left[0] = time.ticks_us()
        return n
    def readinto(self, buf):
        return self._io(self.sock.readinto, buf)
    def write(self, buf):
        return self._io(self.sock.write, buf)
    def ioctl(self, request, arg):
        if request == 4:
            self.sock.close()
            return 0
        return -22
def handshake(ctx, port):
    import socket
    sock = socket.socket()
    sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    pieces.clear()
    left[0] = time.ticks_us()
    tls = ctx.wrap_socket(Noting(sock), server_hostname="localhost")
    done = pieces[:]
    tls.read(2)
    tls.close()
    return done
"""

CLIENT = NOTING + """
import ssl, sys
with open("root.der", "rb") as f:
    root = f.read()
for _ in range(int(sys.argv[3])):
    for port in sys.argv[1:3]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=root)
        print("handshake", port, sum(handshake(ctx, int(port))))
"""


def _certificate(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def server_contexts(d: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server whose leaf the root signed, and one whose leaf an intermediate signed."""
    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    root_key, mid_key, leaf_key = key(), key(), key()
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calibration root")])
    root = _certificate("calibration root", root_key, root_name, root_key, ca=True)
    mid = _certificate("calibration intermediate", mid_key, root_name, root_key, ca=True)
    (d / "root.der").write_bytes(root.public_bytes(serialization.Encoding.DER))
    (d / "leaf.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    contexts = []
    for name, chain in (("direct", [_certificate("localhost", leaf_key, root_name, root_key,
                                                 ca=False)]),
                        ("chained", [_certificate("localhost", leaf_key, mid.subject, mid_key,
                                                  ca=False), mid])):
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        (d / f"{name}.pem").write_bytes(pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(d / f"{name}.pem", d / "leaf.key")
        contexts.append(context)
    return contexts[0], contexts[1]


def serve(server: socket.socket, context: ssl.SSLContext, sessions: int) -> None:
    for _ in range(sessions):
        conn, _ = server.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except OSError:
            return


def verify_ms(handshakes: int = 15) -> float:
    """Milliseconds the unix port's mbedTLS takes here for one P-256 certificate
    verification (the fastest of `handshakes` sessions with each server)."""
    with tempfile.TemporaryDirectory(prefix="wearsafe-mbedtls-speed-") as tmp:
        d = Path(tmp)
        contexts = server_contexts(d)
        servers = [socket.create_server(("127.0.0.1", 0)) for _ in contexts]
        threads = [threading.Thread(target=serve, args=(s, c, handshakes), daemon=True)
                   for s, c in zip(servers, contexts, strict=True)]
        for thread in threads:
            thread.start()
        (d / "client.py").write_text(CLIENT)
        ports = [str(s.getsockname()[1]) for s in servers]
        try:
            done = subprocess.run([micropython(), "client.py", *ports, str(handshakes)],
                                  cwd=d, capture_output=True, text=True, timeout=120,
                                  check=False)
        finally:
            for s in servers:
                s.close()
    best = {port: min((int(w[2]) for w in (line.split() for line in done.stdout.splitlines())
                       if w[:2] == ["handshake", port]), default=0) for port in ports}
    extra_us = best[ports[1]] - best[ports[0]]
    if done.returncode != 0 or not all(best.values()) or extra_us <= 0:
        raise ToolError("cannot calibrate mbedTLS on the unix port: "
                        f"{(done.stdout + done.stderr).strip()[-300:]}")
    return extra_us / 1000
