# The port's `ssl`, with mbedTLS at an ESP32's speed. TEST EQUIPMENT: this folder
# is on a simulated device's path only at ESP32 speed (host_tools/testing/
# esp32_speed.py CpuQuota.device_env), ahead of the port's own modules; it
# never ships to a board.
#
# The device's process runs in a CPU quota that gives MicroPython bytecode an
# ESP32's speed; mbedTLS is C, which this desktop runs about three times faster
# still (host_tools/testing/mbedtls_speed.py). So each stretch of mbedTLS (a
# call into the session or the context, up to a callback it makes into Python)
# runs outside the quota, at this machine's speed, and then the thread waits
# until the stretch has taken WEARSAFE_TLS_SLOWDOWN times the CPU it used (the
# thread's own CPU time, /proc/thread-self/schedstat, in nanoseconds): as long
# as an ESP32 would compute, exactly, where a CPU quota would run it in bursts
# of the kernel's ticks. The callbacks (the stream under the session: the
# firmware's link._Serviced, which serves the sensors) run in the quota. The
# thread moves between the two groups by writing "0" to a group's tasks file.
#
# The port's ssl is micropython-lib python-stdlib/ssl/ssl.py (frozen: .frozen on
# the unix port, the manifest on esp32): SSLContext over the built-in `tls`
# (extmod/modtls_mbedtls.c), whose wrap_socket returns tls's SSLSocket.
import io
import os
import sys

import utime

_here = __file__.rsplit("/", 1)[0]
_model = sys.modules.pop(__name__)
_path = sys.path[:]
sys.path[:] = [p for p in _path if p != _here]
try:
    import ssl as _port
finally:
    sys.path[:] = _path
    sys.modules[__name__] = _model

CERT_NONE = _port.CERT_NONE
CERT_OPTIONAL = _port.CERT_OPTIONAL
CERT_REQUIRED = _port.CERT_REQUIRED
MBEDTLS_VERSION = _port.MBEDTLS_VERSION
PROTOCOL_TLS_CLIENT = _port.PROTOCOL_TLS_CLIENT
PROTOCOL_TLS_SERVER = _port.PROTOCOL_TLS_SERVER

_groups = os.getenv("WEARSAFE_CPU_GROUPS")
_slowdown = os.getenv("WEARSAFE_TLS_SLOWDOWN")
if not _groups or not _slowdown:
    raise ImportError("esp32speed ssl: WEARSAFE_CPU_GROUPS or WEARSAFE_TLS_SLOWDOWN unset "
                      "(host_tools/testing/esp32_speed.py CpuQuota.device_env sets them)")
_quota, _free = [open(p, "wb") for p in _groups.split(":")]
_MOVE = b"0"  # the writing thread
# integers throughout: a float is an allocation on this port
_PER_MILLE = int(float(_slowdown) * 1000)
_schedstat = open("/proc/thread-self/schedstat", "rb")
_line = bytearray(64)
# the stretch of mbedTLS under way: when it began, in CPU ns and in ticks_us
_began_ns = [0]
_began_us = [utime.ticks_us()]
paced = [0, 0, 0]  # stretches so far, their CPU ns and their wall us (for tests/test_esp32_speed)


def _cpu_ns():
    """This thread's CPU time (the first field of its schedstat)."""
    _schedstat.seek(0)
    ns = 0
    for i in range(_schedstat.readinto(_line)):
        if _line[i] < 48:
            break
        ns = ns * 10 + _line[i] - 48
    return ns


def _enter_c():
    _free.write(_MOVE)  # and brings the CPU time up to now (below)
    _began_ns[0] = _cpu_ns()
    _began_us[0] = utime.ticks_us()


def _leave_c():
    # The move comes first: moving the running thread brings its CPU time up to
    # now (kernel/sched/core.c sched_move_task dequeues it: update_curr), which
    # otherwise lags until the next tick. The wait takes no CPU of the quota.
    _quota.write(_MOVE)
    used_ns = _cpu_ns() - _began_ns[0]
    owed_us = used_ns * _PER_MILLE // 1000000 - utime.ticks_diff(utime.ticks_us(), _began_us[0])
    if owed_us > 0:
        utime.sleep_us(owed_us)  # the real clock: an ESP32 computing, not sleeping
    paced[0] += 1
    paced[1] += used_ns
    paced[2] += utime.ticks_diff(utime.ticks_us(), _began_us[0])


class _Stretch:
    """`with _IN_C:` a stretch of mbedTLS; `with _IN_PYTHON:` a callback inside one.
    Made once: entering a `with` on them allocates nothing, where passing a bound
    method on would allocate one per call (the firmware's loop allocates none)."""

    def __init__(self, enter, leave):
        self._enter = enter
        self._leave = leave

    def __enter__(self):
        self._enter()

    def __exit__(self, kind, value, trace):
        self._leave()


_IN_C = _Stretch(_enter_c, _leave_c)
_IN_PYTHON = _Stretch(_leave_c, _enter_c)


class _Stream(io.IOBase):
    """The firmware's stream under the session (link._Serviced), as mbedTLS calls
    it: the Python it runs is at bytecode speed."""

    def __init__(self, stream):
        self._stream = stream

    def readinto(self, buf):
        with _IN_PYTHON:
            return self._stream.readinto(buf)

    def write(self, buf):
        with _IN_PYTHON:
            return self._stream.write(buf)

    def ioctl(self, request, arg):
        with _IN_PYTHON:
            return self._stream.ioctl(request, arg)


class _Session:
    """tls's SSLSocket, each call at mbedTLS's ESP32 speed."""

    def __init__(self, session):
        self._session = session

    def readinto(self, buf):
        with _IN_C:
            return self._session.readinto(buf)

    def write(self, buf):
        with _IN_C:
            return self._session.write(buf)

    def read(self, *n):
        with _IN_C:
            return self._session.read(*n)

    def close(self):
        with _IN_C:
            return self._session.close()

    def __getattr__(self, name):  # the rest at bytecode speed: never kinder
        return getattr(self._session, name)


class SSLContext(_port.SSLContext):
    def load_cert_chain(self, certfile, keyfile):
        with _IN_C:
            _port.SSLContext.load_cert_chain(self, certfile, keyfile)

    def load_verify_locations(self, cafile=None, cadata=None):
        with _IN_C:
            _port.SSLContext.load_verify_locations(self, cafile, cadata)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        # a plain socket's callbacks are C (the port's socket), not Python
        stream = _Stream(sock) if isinstance(sock, io.IOBase) else sock
        with _IN_C:
            session = _port.SSLContext.wrap_socket(
                self, stream, server_side=server_side,
                do_handshake_on_connect=do_handshake_on_connect,
                server_hostname=server_hostname)
        return _Session(session)
