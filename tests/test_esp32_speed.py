"""The ESP32-speed model's C half (board/sim/esp32speed/ssl.py): every stretch of
mbedTLS takes the slowdown times the CPU it used, and the Python that mbedTLS
calls back runs in the bytecode quota."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

from host_tools.paths import micropython
from host_tools.testing import esp32_speed, mbedtls_speed

SLOWDOWN = 60.0

CLIENT = mbedtls_speed.NOTING + """
import ssl, sys
def group():
    with open("/proc/self/cgroup") as f:
        return [l for l in f.read().split() if ":cpu:" in l][0]
seen = []
class Looking(Noting):
    def readinto(self, buf):
        seen.append(group())
        return Plain.readinto(self, buf)
with open("root.der", "rb") as f:
    root = f.read()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=root)
Plain, Noting = Noting, Looking  # handshake() wraps the socket in a Looking
pieces = handshake(ctx, int(sys.argv[1]))
print("callbacks", " ".join(sorted(set(seen))))
print("after", group())
print("paced", *ssl.paced)
"""


def test_mbedtls_takes_the_slowdown_times_its_cpu_and_callbacks_run_in_the_quota(tmp_path):
    server_context = mbedtls_speed.server_contexts(tmp_path)[0]
    (tmp_path / "client.py").write_text(CLIENT)
    quota = esp32_speed.CpuQuota(f"wearsafe-test-{os.getpid()}", 2.0, SLOWDOWN)
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            threading.Thread(target=mbedtls_speed.serve, args=(server, server_context, 1),
                             daemon=True).start()
            env = quota.device_env({**os.environ, "MICROPYPATH": ".frozen"})
            done = subprocess.run([micropython(), "client.py", str(server.getsockname()[1])],
                                  cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120, check=False, preexec_fn=quota.enter)
    finally:
        quota.remove()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    in_quota = f"cpu:/{quota.path.name}"
    assert [g.split(":", 1)[1] for g in lines["callbacks"]] == [in_quota]
    assert lines["after"][0].split(":", 1)[1] == in_quota
    stretches, cpu_ns, wall_us = map(int, lines["paced"])
    assert stretches >= 10  # every record read and written splits the arithmetic
    assert cpu_ns >= 1_000_000  # a P-256 handshake is milliseconds of arithmetic anywhere
    # each stretch waited until it had taken SLOWDOWN times its CPU (floored to a us)
    assert wall_us >= SLOWDOWN * cpu_ns / 1000 - stretches, (wall_us, cpu_ns)
