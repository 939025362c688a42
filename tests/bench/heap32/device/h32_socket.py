# Stand-in for the socket module (imported by umqtt.simple as usocket) on
# the heap bench: the webassembly port has none, and the bench talks to no
# network on either port. The TCP socket only carries the TLS session, and
# the scripted broker sits behind h32_ssl; this socket connects nowhere.
# Heap: one small object per connection, as the esp32 port's socket object.
# The link polls it (a non-blocking connect, a wait for the broker): it is a
# stream (io.IOBase, py/modio.c) whose poll finds it always ready, as the
# scripted broker answers at once.
import io

AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


_MP_STREAM_POLL = 3  # py/stream.h
_MP_STREAM_CLOSE = 4
_READY = 0x0001 | 0x0004  # select.POLLIN | select.POLLOUT


class socket(io.IOBase):
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
        self.timeout = None

    def connect(self, address):
        pass

    def settimeout(self, seconds):
        self.timeout = seconds

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def close(self):
        pass

    def ioctl(self, request, arg):
        if request == _MP_STREAM_POLL:
            return arg & _READY
        return 0 if request == _MP_STREAM_CLOSE else -22  # EINVAL
