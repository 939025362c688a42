# Stand-in for the socket module (imported by umqtt.simple as usocket) on
# the heap bench: the webassembly port has none, and the bench talks to no
# network on either port. The TCP socket only carries the TLS session, and
# the scripted broker sits behind h32_ssl; this socket connects nowhere.
# Heap: one small object per connection, as the esp32 port's socket object.
AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


class socket:
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
