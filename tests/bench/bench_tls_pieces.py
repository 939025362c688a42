"""The pieces of a mutual-TLS handshake that no loop can cut, and what ESP32 speed
makes of them. The unix port (unthrottled) opens a session with a local TLS
server, as the device opens one with the broker (P-256 certificates from a fleet
CA, the server asking for the client's), through a stream that notes when
mbedTLS leaves its arithmetic to read or write a record: the device's sensor
loop runs only there (firmware/lib/wearsafe/link.py, _Serviced). Each compute
piece, times the ESP32-speed quota's slowdown, is what the simulator's loop
stalls; beside it, what an ESP32 takes for the operation that piece holds:

- Mbed-TLS/TF-PSA-Crypto#873 (ESP32 at 240 MHz, mbedTLS 3.6, fixed-point ECP):
  ecdsa_verify P-256 172.71 ms, ecp_mul P-256 41.30 ms;
- espressif/esp-idf#19027 (ESP32-S3 at 240 MHz): ecdsa_verify P-256 267-302 ms;
- espressif/esp-idf#1177 (ESP32, 2017): ECDSA P-256 sign 194 ms.

The quota is calibrated on MicroPython bytecode (micropython/micropython#7850);
mbedTLS's C arithmetic gains more from a 64-bit desktop, so the ratio of the two
says how much harsher than a board the simulator is in a handshake.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from host_tools.fleet.pki import FleetCA  # noqa: E402
from host_tools.paths import micropython  # noqa: E402
from host_tools.testing import esp32_speed  # noqa: E402

HANDSHAKES = 5
ESP32_VERIFY_MS = 172.71  # Mbed-TLS/TF-PSA-Crypto#873: the fastest published figure

CLIENT = """
import io, socket, ssl, sys, time
def rd(n):
    with open(n, "rb") as f:
        return f.read()
pieces = []
left = [0]
class Noting(io.IOBase):  # as link._Serviced: mbedTLS's reads and writes pass here
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
for _ in range(int(sys.argv[2])):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=rd("ca.der"))
    ctx.load_cert_chain(rd("device.der"), rd("device.key.der"))
    sock = socket.socket()
    sock.connect(socket.getaddrinfo("127.0.0.1", int(sys.argv[1]))[0][-1])
    pieces.clear()
    left[0] = time.ticks_us()
    tls = ctx.wrap_socket(Noting(sock), server_hostname="localhost")
    pieces.sort()
    print("pieces", sum(pieces), pieces[-1], pieces[-2], len(pieces))
    tls.read(2)
    tls.close()
"""


def _der(pem: Path, out: Path, key: bool = False) -> None:
    data = pem.read_bytes()
    if key:
        out.write_bytes(serialization.load_pem_private_key(data, None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
    else:
        out.write_bytes(x509.load_pem_x509_certificate(data).public_bytes(
            serialization.Encoding.DER))


def _serve(server: socket.socket, context: ssl.SSLContext) -> None:
    for _ in range(HANDSHAKES):
        conn, _ = server.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")


def main() -> None:
    slowdown = esp32_speed.calibrate(runs=3).slowdown
    with tempfile.TemporaryDirectory(prefix="wearsafe-bench-tls-") as tmp:
        d = Path(tmp)
        ca = FleetCA.open_or_create(d / "ca")
        server_key, server_cert = ca.issue("localhost", server=True, into=d)
        device_key, device_cert = ca.issue("device", into=d)
        _der(ca.cert_path, d / "ca.der")
        _der(device_cert, d / "device.der")
        _der(device_key, d / "device.key.der", key=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server_cert, server_key)
        context.load_verify_locations(ca.cert_path)
        context.verify_mode = ssl.CERT_REQUIRED
        with socket.create_server(("127.0.0.1", 0)) as server:
            thread = threading.Thread(target=_serve, args=(server, context), daemon=True)
            thread.start()
            (d / "client.py").write_text(CLIENT)
            done = subprocess.run([micropython(), "client.py", str(server.getsockname()[1]),
                                   str(HANDSHAKES)], cwd=d, capture_output=True, text=True,
                                  timeout=120, check=True)
            thread.join(10)
    runs = [[int(w) for w in line.split()[1:]] for line in done.stdout.splitlines()
            if line.startswith("pieces")]
    total, longest, second, count = (min(r[i] for r in runs) for i in range(4))
    print(f"mutual-TLS handshake on the unix port: {count} pieces, {total / 1000:.1f} ms of "
          f"arithmetic, the longest {longest / 1000:.1f} ms, the next {second / 1000:.1f} ms "
          f"(best of {len(runs)})")
    stall = longest * slowdown / 1000
    print(f"at the quota's {slowdown:.0f} times: the longest is a {stall:.0f} ms stall, "
          f"{stall / 1280:.2f} of the FIFOs' 1280 ms")
    print(f"an ESP32's P-256 ecdsa_verify is {ESP32_VERIFY_MS:.0f} ms "
          f"(Mbed-TLS/TF-PSA-Crypto#873): in a handshake the simulator is "
          f"{stall / ESP32_VERIFY_MS:.1f} times as slow as that, if the piece is one verify")


if __name__ == "__main__":
    main()
