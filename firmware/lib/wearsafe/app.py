# The application loop. For now it reports, once per period, the status
# message it would publish (firmware version and uptime: nothing personal).
import board
from wearsafe import VERSION, log

PERIOD_MS = 1000


def status():
    return "fw=%s uptime_s=%d" % (VERSION, board.ticks_ms() // 1000)


def run(cycles=None):
    log.info("boot", "wearsafe", VERSION, "board", board.NAME)
    n = 0
    while cycles is None or n < cycles:
        message = status()
        log.info("would-publish", len(message), "bytes:", message)
        n += 1
        board.sleep_ms(PERIOD_MS)


def main():
    try:
        run()
    except KeyboardInterrupt:
        log.info("stopped")
