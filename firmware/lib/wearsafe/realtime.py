# The sensor loop's real time. The chips' FIFOs hold 1.28 s each (MAX30102,
# LIS3DH); much else the device does takes as long on an ESP32: a
# PUBACK's round trip, a TLS handshake, an update chunk, a flash erase, the
# Ed25519 check (about a second of MicroPython there), the heart rate's
# autocorrelation. Such work calls service() wherever it may pause: between
# the slices of a wait for the broker, between blocks it writes, between
# rounds of its arithmetic. The periodic tasks (the sensor hub's FIFO drain
# into the estimators' RAM windows, each second's vitals) run then if they
# are due, so no FIFO fills up and no second is lost while the link or an
# update works.
#
# No threads and no interrupts: a task runs only where service() is called,
# never inside another part's half-done state (a machine.Timer soft callback
# would run between any two bytecodes, in the middle of the I2C driver's own
# transfers too). A task is never entered twice, but an earlier one may run
# inside a later one (the FIFO drain inside the vitals' arithmetic).
# Deadlines use ticks_add/ticks_diff: the ticks wrap at 2^30 ms on the ESP32.
from micropython import const

_MAX_SLEEP_MS = const(1000)

_board = None  # set by every(), before any task exists
# While the radio is off the waits are light sleep (machine.lightsleep: the CPU
# stops; the chips' FIFOs go on filling), counted for wearsafe/energy.py.
radio_off = False
asleep_ms = 0
_tasks: list = []  # [task, period_ms, due, running], in the order they were added


def every(board, period_ms, task, first_in=0):
    """Run task() every period_ms, the first time first_in ms from now; returns the
    task's entry, whose period set_period() changes."""
    global _board
    _board = board
    entry = [task, period_ms, board.ticks_add(board.ticks_ms(), first_in), False]
    _tasks.append(entry)
    return entry


def set_period(entry, period_ms):
    """From its next run on (a shorter period takes effect at once)."""
    if period_ms < entry[1]:
        entry[2] = _board.ticks_ms()  # type: ignore[union-attr]
    entry[1] = period_ms


def stop():
    _tasks.clear()


def service():
    """Run each task that is due (cheap when none is; allocation-free)."""
    for i in range(len(_tasks)):  # not `for entry in`: that allocates an iterator
        entry = _tasks[i]
        if entry[3]:
            continue
        now = _board.ticks_ms()  # type: ignore[union-attr]
        if _board.ticks_diff(now, entry[2]) < 0:  # type: ignore[union-attr]
            continue
        entry[3] = True
        try:
            entry[0]()
        finally:
            entry[3] = False
        due = _board.ticks_add(entry[2], entry[1])  # type: ignore[union-attr]
        # fell behind: the next run a period from now
        if _board.ticks_diff(due, now) <= 0:  # type: ignore[union-attr]
            due = _board.ticks_add(now, entry[1])  # type: ignore[union-attr]
        entry[2] = due


def due_in_ms(most=_MAX_SLEEP_MS):
    """Milliseconds until the next task is due (at least 1, at most `most`)."""
    for i in range(len(_tasks)):
        entry = _tasks[i]
        if not entry[3]:
            left = _board.ticks_diff(entry[2], _board.ticks_ms())  # type: ignore[union-attr]
            if left < most:
                most = left
    return 1 if most < 1 else most


def sleep_ms(board, ms):
    """Sleep for ms, running the tasks whenever one is due meanwhile."""
    end = board.ticks_add(board.ticks_ms(), ms)
    while True:
        service()
        left = board.ticks_diff(end, board.ticks_ms())
        if left <= 0:
            return
        _sleep(board, due_in_ms(left))


def _sleep(board, ms):
    global asleep_ms
    if not radio_off:
        board.sleep_ms(ms)  # an idle wait, in which the Wi-Fi driver keeps working
        return
    start = board.ticks_ms()
    board.lightsleep(ms)
    asleep_ms += board.ticks_diff(board.ticks_ms(), start)
