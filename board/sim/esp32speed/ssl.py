# The port's `ssl`, with mbedTLS at an ESP32's speed. TEST EQUIPMENT: this folder
# is on a simulated device's path only at ESP32 speed (host_tools/testing/
# esp32_speed.py CpuQuota.device_env), ahead of the port's own modules; it
# never ships to a board.
#
# The device's process runs in a CPU quota that gives MicroPython bytecode an
# ESP32's speed; mbedTLS is C, which this desktop runs about three times faster
# still (host_tools/testing/mbedtls_speed.py). So every call into the TLS
# session (and into the context, which parses keys and certificates) moves the
# thread into a second group at mbedTLS's ESP32 speed, and every callback the
# session makes into Python (the stream under it: the firmware's link._Serviced,
# which serves the sensors) moves it back while the callback runs. A move is
# one write of "0" to a group's tasks file: the calling thread.
#
# The port's ssl is micropython-lib python-stdlib/ssl/ssl.py (frozen: .frozen on
# the unix port, the manifest on esp32): SSLContext over the built-in `tls`
# (extmod/modtls_mbedtls.c), whose wrap_socket returns tls's SSLSocket.
import io
import os
import sys

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
if not _groups:
    raise ImportError("esp32speed ssl: WEARSAFE_CPU_GROUPS names no cgroups "
                      "(host_tools/testing/esp32_speed.py CpuQuota.device_env sets it)")
_bytecode, _c = [open(p, "wb") for p in _groups.split(":")]
_MOVE = b"0"  # the writing thread


# Each method moves, calls and moves back in place: passing a bound method on
# would allocate one per call, which the firmware's loop does not do.


class _Stream(io.IOBase):
    """The firmware's stream under the session (link._Serviced), as mbedTLS calls
    it: the Python it runs is at bytecode speed."""

    def __init__(self, stream):
        self._stream = stream

    def readinto(self, buf):
        _bytecode.write(_MOVE)
        try:
            return self._stream.readinto(buf)
        finally:
            _c.write(_MOVE)

    def write(self, buf):
        _bytecode.write(_MOVE)
        try:
            return self._stream.write(buf)
        finally:
            _c.write(_MOVE)

    def ioctl(self, request, arg):
        _bytecode.write(_MOVE)
        try:
            return self._stream.ioctl(request, arg)
        finally:
            _c.write(_MOVE)


class _Session:
    """tls's SSLSocket, each call at mbedTLS's ESP32 speed."""

    def __init__(self, session):
        self._session = session

    def readinto(self, buf):
        _c.write(_MOVE)
        try:
            return self._session.readinto(buf)
        finally:
            _bytecode.write(_MOVE)

    def write(self, buf):
        _c.write(_MOVE)
        try:
            return self._session.write(buf)
        finally:
            _bytecode.write(_MOVE)

    def read(self, *n):
        _c.write(_MOVE)
        try:
            return self._session.read(*n)
        finally:
            _bytecode.write(_MOVE)

    def close(self):
        _c.write(_MOVE)
        try:
            return self._session.close()
        finally:
            _bytecode.write(_MOVE)

    def __getattr__(self, name):  # the rest at bytecode speed: never kinder
        return getattr(self._session, name)


class SSLContext(_port.SSLContext):
    def load_cert_chain(self, certfile, keyfile):
        _c.write(_MOVE)
        try:
            _port.SSLContext.load_cert_chain(self, certfile, keyfile)
        finally:
            _bytecode.write(_MOVE)

    def load_verify_locations(self, cafile=None, cadata=None):
        _c.write(_MOVE)
        try:
            _port.SSLContext.load_verify_locations(self, cafile, cadata)
        finally:
            _bytecode.write(_MOVE)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        # a plain socket's callbacks are C (the port's socket), not Python
        stream = _Stream(sock) if isinstance(sock, io.IOBase) else sock
        _c.write(_MOVE)
        try:
            session = _port.SSLContext.wrap_socket(
                self, stream, server_side=server_side,
                do_handshake_on_connect=do_handshake_on_connect,
                server_hostname=server_hostname)
        finally:
            _bytecode.write(_MOVE)
        return _Session(session)
