# Device log lines: level, uptime and a fixed event name, then values the
# caller chose. Rule: never pass a reading, a key or anything personal here;
# log sizes, counts and states instead.
import board

_LEVELS = ("debug", "info", "warn", "error")
level = 1


def _emit(lvl, event, args):
    if lvl < level:
        return
    line = "%d %s %s" % (board.ticks_ms(), _LEVELS[lvl], event)
    for a in args:
        line += " " + str(a)
    print(line)


def debug(event, *args):
    _emit(0, event, args)


def info(event, *args):
    _emit(1, event, args)


def warn(event, *args):
    _emit(2, event, args)


def error(event, *args):
    _emit(3, event, args)
