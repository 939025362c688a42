# What the device spends its energy on, counted since boot: time per radio
# state (off, joining the access point, joined), time asleep (light sleep
# between FIFO reads while the radio is off), TLS handshakes and the bytes
# the radio carried. The counts go out in status messages; the host's model
# (host_tools/fleet/energy.py) turns them into milliamperes and days on a
# cell. Counts only: they hold no reading. The light sleep is realtime's, the
# bytes link's; this module only reads them.
from wearsafe import link, realtime

RADIO_OFF = 0
JOINING = 1
JOINED = 2
_STATES = ("radio-off-ms", "joining-ms", "joined-ms")


class Energy:
    def __init__(self, board):
        self._board = board
        self.state = RADIO_OFF
        realtime.radio_off = True
        self._since = board.ticks_ms()
        self.state_ms = [0, 0, 0]

    def radio(self, state):
        """The radio is now in `state` (RADIO_OFF, JOINING or JOINED)."""
        if state != self.state:
            self._count()
            self.state = state
            realtime.radio_off = state == RADIO_OFF

    def _count(self):
        now = self._board.ticks_ms()
        self.state_ms[self.state] += self._board.ticks_diff(now, self._since)
        self._since = now

    def fields(self, handshakes):
        """The status message's fields: counts since boot, as text."""
        self._count()
        up = self.state_ms[0] + self.state_ms[1] + self.state_ms[2]
        # the simulator's own work (its emulated chips) is not the device's
        awake = max(0, up - realtime.asleep_ms - self._board.simulator_ms())
        fields = [("uptime-ms", "%d" % up), ("awake-ms", "%d" % awake),
                  ("asleep-ms", "%d" % realtime.asleep_ms)]
        for i in range(3):
            fields.append((_STATES[i], "%d" % self.state_ms[i]))
        return fields + [("handshakes", "%d" % handshakes), ("tx-bytes", "%d" % link.carried[0]),
                         ("rx-bytes", "%d" % link.carried[1])]
