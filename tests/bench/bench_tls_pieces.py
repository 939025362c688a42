"""The pieces of a mutual-TLS handshake that no loop can cut, and what the
ESP32-speed model makes of them. The unix port opens sessions with a local TLS
server, as the device opens one with the broker (P-256 certificates from a fleet
CA, the server asking for the client's), through a stream that notes when
mbedTLS leaves its arithmetic to read or write a record: the device's sensor
loop runs only there (firmware/lib/wearsafe/link.py, _Serviced). It does so
twice: unthrottled, and inside the model (the bytecode quota, and mbedTLS at
its ESP32 rate: host_tools/testing/esp32_speed.py, board/sim/esp32speed), where
the longest piece is the longest stall a device has in a handshake. Beside it,
what an ESP32 takes for the operations a piece holds:

- Mbed-TLS/TF-PSA-Crypto#873 (ESP32 at 240 MHz, mbedTLS 3.6.6, fixed-point ECP):
  ecdsa_verify P-256 172.71 ms, ecp_mul P-256 41.30 ms;
- espressif/esp-idf#19027 (ESP32-S3 at 240 MHz): ecdsa_verify P-256 267-302 ms;
- espressif/esp-idf#1177 (ESP32, 2017): ECDSA P-256 sign 194 ms.

Before the model had its TLS rate, the quota (calibrated on bytecode) made the
same pieces 3 to 5 times an ESP32's; the last line says what the bytecode
quota alone would make of them.
"""

from __future__ import annotations

import os
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
from host_tools.testing import esp32_speed, mbedtls_speed  # noqa: E402

HANDSHAKES = 5

CLIENT = mbedtls_speed.NOTING + """
import ssl, sys
def rd(n):
    with open(n, "rb") as f:
        return f.read()
for _ in range(int(sys.argv[2])):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=rd("ca.der"))
    ctx.load_cert_chain(rd("device.der"), rd("device.key.der"))
    pieces = sorted(handshake(ctx, int(sys.argv[1])))
    print("pieces", sum(pieces), pieces[-1], pieces[-2], len(pieces))
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


def _pieces(d: Path, context: ssl.SSLContext, quota: esp32_speed.CpuQuota | None) -> list[int]:
    """(arithmetic, longest piece, next piece, pieces) in microseconds, the best of
    HANDSHAKES, unthrottled or inside `quota` with the device half of the model."""
    env = {**os.environ, "MICROPYPATH": ".frozen"}
    with socket.create_server(("127.0.0.1", 0)) as server:
        thread = threading.Thread(target=mbedtls_speed.serve,
                                  args=(server, context, HANDSHAKES), daemon=True)
        thread.start()
        done = subprocess.run([micropython(), "client.py", str(server.getsockname()[1]),
                               str(HANDSHAKES)], cwd=d, capture_output=True, text=True,
                              timeout=600, check=True,
                              env=quota.device_env(env) if quota else env,
                              preexec_fn=quota.enter if quota else None)
        thread.join(10)
    runs = [[int(w) for w in line.split()[1:]] for line in done.stdout.splitlines()
            if line.startswith("pieces")]
    return [min(r[i] for r in runs) for i in range(4)]


def main() -> None:
    calibration = esp32_speed.calibrate(runs=3)
    print(calibration.line())
    quota = calibration.quota(f"wearsafe-bench-tls-{os.getpid()}")
    try:
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
            (d / "client.py").write_text(CLIENT)
            total, longest, second, count = _pieces(d, context, None)
            _, model_longest, model_second, _ = _pieces(d, context, quota)
    finally:
        quota.remove()
    verify = mbedtls_speed.ESP32_VERIFY_MS
    print(f"mutual-TLS handshake on the unix port: {count} pieces, {total / 1000:.1f} ms of "
          f"arithmetic, the longest {longest / 1000:.1f} ms, the next {second / 1000:.1f} ms "
          f"(best of {HANDSHAKES})")
    print(f"in the ESP32-speed model: the longest is a {model_longest / 1000:.0f} ms stall "
          f"({model_longest / 1000 / verify:.1f} times an ESP32's P-256 ecdsa_verify, "
          f"{verify} ms), the next {model_second / 1000:.0f} ms; "
          f"{model_longest / 1000 / 1280:.2f} of the FIFOs' 1280 ms")
    print(f"the bytecode quota alone would make the longest "
          f"{longest * calibration.slowdown / 1000:.0f} ms")


if __name__ == "__main__":
    main()
