# What the device spends its energy on, counted since boot: time per radio
# state (off, joining the access point, joined), time asleep (light sleep
# between FIFO reads while the radio is off), TLS handshakes and the bytes
# the radio carried. The counts go out in status messages; the host's model
# (host_tools/fleet/energy.py) turns them into milliamperes and days on a
# cell. Counts only: they hold no reading.
RADIO_OFF = 0
JOINING = 1
JOINED = 2
_STATES = ("radio-off-ms", "joining-ms", "joined-ms")


class Energy:
    def __init__(self, board):
        self._board = board
        self.state = RADIO_OFF
        self._since = board.ticks_ms()
        self.state_ms = [0, 0, 0]
        self.asleep_ms = 0
        self.tx_bytes = 0
        self.rx_bytes = 0

    def radio(self, state):
        """The radio is now in `state` (RADIO_OFF, JOINING or JOINED)."""
        if state != self.state:
            self._count()
            self.state = state

    def _count(self):
        now = self._board.ticks_ms()
        self.state_ms[self.state] += self._board.ticks_diff(now, self._since)
        self._since = now

    def fields(self, handshakes):
        """The status message's fields: counts since boot, as text."""
        self._count()
        up = self.state_ms[0] + self.state_ms[1] + self.state_ms[2]
        # the simulator's own work (its emulated chips) is not the device's
        awake = max(0, up - self.asleep_ms - self._board.simulator_ms())
        fields = [("uptime-ms", "%d" % up), ("awake-ms", "%d" % awake),
                  ("asleep-ms", "%d" % self.asleep_ms)]
        for i in range(3):
            fields.append((_STATES[i], "%d" % self.state_ms[i]))
        return fields + [("handshakes", "%d" % handshakes), ("tx-bytes", "%d" % self.tx_bytes),
                         ("rx-bytes", "%d" % self.rx_bytes)]


meter = None  # the running application's Energy (app.run sets it); None in unit tests


def sleep_ms(board, ms):
    """Sleep ms: in light sleep while the radio is off (the CPU stops; the chips'
    FIFOs go on filling), else an idle wait the Wi-Fi driver keeps working in."""
    if meter is None or meter.state != RADIO_OFF:
        board.sleep_ms(ms)
        return
    start = board.ticks_ms()
    board.lightsleep(ms)
    meter.asleep_ms += board.ticks_diff(board.ticks_ms(), start)


def carried(sent, received):
    if meter is not None:
        meter.tx_bytes += sent
        meter.rx_bytes += received
