"""A real-world network between each simulated device and the broker, on loopback.

`wearsafe sim --network "rtt=300ms,loss=2%,rate=100kbit,drop-every=60s"` puts a
TCP relay of its own in front of the broker for each device (the device's
settings name the relay's port; TLS passes through it untouched). The relay
delays each direction by half the round trip, sends no faster than the rate
(bytes queue behind each other, as on a slow link), and closes both sides of
every connection each `drop-every` (the device must reconnect).

Loss: a relay cannot drop bytes from a TCP stream, and on a real link the
kernel resends a lost segment, so what loss costs the application is time:
each segment (up to MSS bytes) is, with probability `loss`, held back one
retransmission timeout, and everything behind it waits (head-of-line
blocking). The timeout is max(200 ms, 2 x rtt): Linux's TCP_RTO_MIN is HZ/5
(include/net/tcp.h), and the RTO is about the smoothed RTT plus four
deviations (RFC 6298), never below it. That is harsher than a busy stream,
where three duplicate ACKs resend after one RTT, and right for MQTT's small
messages. Connection set-up loses too: a lost SYN (or SYN-ACK) costs the
initial RTO of 1 s (RFC 6298 section 2.1) before the connection carries a
byte. The kernel on these machines has no netem qdisc, so this is done in
user space.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from dataclasses import dataclass

from host_tools.paths import ToolError

MSS = 1400  # bytes a segment carries on a typical Ethernet/Wi-Fi path
RTO_MIN_S = 0.2  # Linux TCP_RTO_MIN (include/net/tcp.h: HZ/5)
INITIAL_RTO_S = 1.0  # RFC 6298 section 2.1: before any RTT is measured (a SYN)
_FIELD = re.compile(r"^(rtt|loss|rate|drop-every)=(\d+(?:\.\d+)?)(ms|s|%|kbit|mbit|bit)?$")
_UNITS = {("rtt", "ms"): 1e-3, ("rtt", "s"): 1.0, ("loss", "%"): 0.01,
          ("rate", "bit"): 1.0, ("rate", "kbit"): 1e3, ("rate", "mbit"): 1e6,
          ("drop-every", "s"): 1.0, ("drop-every", "ms"): 1e-3}


@dataclass(frozen=True)
class NetworkProfile:
    rtt_s: float = 0.0
    loss: float = 0.0  # probability that a segment needs a retransmission
    rate_bps: float = 0.0  # 0: no cap
    drop_every_s: float = 0.0  # 0: never
    text: str = "direct"

    @property
    def rto_s(self) -> float:
        return max(RTO_MIN_S, 2 * self.rtt_s)


def parse_network(text: str) -> NetworkProfile:
    """rtt=300ms,loss=2%,rate=100kbit,drop-every=60s (any of them, in any order)."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _FIELD.match(part)
        unit = (m.group(1), m.group(3)) if m else None
        if not m or unit not in _UNITS or m.group(1) in values:
            raise ToolError(f"--network {text!r}: {part!r} is not one of rtt=<ms|s>, "
                            "loss=<%>, rate=<bit|kbit|mbit>, drop-every=<s|ms>, each once "
                            "(e.g. rtt=300ms,loss=2%,rate=100kbit,drop-every=60s)")
        values[m.group(1)] = float(m.group(2)) * _UNITS[unit]
    if values.get("loss", 0) >= 1 or not values:
        raise ToolError(f"--network {text!r}: give at least one setting; loss below 100%")
    return NetworkProfile(values.get("rtt", 0.0), values.get("loss", 0.0),
                          values.get("rate", 0.0), values.get("drop-every", 0.0), text)


class LinkEmulator:
    """One device's relay to the broker, in a thread of its own (an asyncio loop)."""

    def __init__(self, profile: NetworkProfile, broker_port: int, seed: int,
                 broker_host: str = "127.0.0.1") -> None:
        self.profile = profile
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.random = random.Random(seed)
        self.drops = 0  # connections the relay cut on schedule
        self.retransmissions = 0  # segments held back one RTO
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise ToolError("the network emulator did not start")
        return self.port

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        if self.profile.drop_every_s:
            self._loop.call_later(self.profile.drop_every_s, self._drop_all)
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)  # every relay still open ends here
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def drop_now(self) -> None:
        """Cut every connection now (from any thread), as a drop-every does."""
        self._loop.call_soon_threadsafe(self._cut)

    def _drop_all(self) -> None:
        self._cut()
        self._loop.call_later(self.profile.drop_every_s, self._drop_all)

    def _cut(self) -> None:
        for pair in list(self._links):
            self.drops += 1
            for writer in pair:
                writer.transport.abort()

    async def _connection(self, device_r: asyncio.StreamReader,
                          device_w: asyncio.StreamWriter) -> None:
        try:
            await self._relay(device_r, device_w)
        except asyncio.CancelledError:
            # the emulator stops: end as a finished task (Python 3.11's streams
            # callback asks a cancelled one for its exception and logs a traceback)
            device_w.transport.abort()

    async def _relay(self, device_r: asyncio.StreamReader,
                     device_w: asyncio.StreamWriter) -> None:
        if self.random.random() < self.profile.loss:  # the SYN or SYN-ACK was lost
            self.retransmissions += 1
            await asyncio.sleep(INITIAL_RTO_S)
        try:
            broker_r, broker_w = await asyncio.open_connection(self.broker_host, self.broker_port)
        except OSError:
            device_w.transport.abort()
            return
        pair = (device_w, broker_w)
        self._links.add(pair)
        try:
            await asyncio.gather(self._pump(device_r, broker_w), self._pump(broker_r, device_w))
        finally:
            self._links.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: segments delivered in order, each when the link would."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, writer))
        line_free = 0.0
        try:
            while segment := await reader.read(MSS):
                now = self._loop.time()
                if self.profile.rate_bps:  # serialised behind what is already queued
                    line_free = max(line_free, now) + 8 * len(segment) / self.profile.rate_bps
                due = max(line_free, now) + self.profile.rtt_s / 2
                if self.random.random() < self.profile.loss:
                    self.retransmissions += 1
                    due += self.profile.rto_s
                await queue.put((due, segment))
        except (ConnectionError, OSError):
            pass
        finally:
            await queue.put((0.0, b""))  # the end, after what is in flight
            await deliver

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]],
                       writer: asyncio.StreamWriter) -> None:
        last = 0.0
        while True:
            due, segment = await queue.get()
            if not segment:
                writer.transport.abort()
                return
            last = max(last, due)  # in order: a held segment holds those behind it
            await asyncio.sleep(max(0.0, last - self._loop.time()))
            try:
                writer.write(segment)
                await writer.drain()
            except (ConnectionError, OSError):
                return
