# The device half of the target test harness (runs on MicroPython).
# The host runs one test function per call and reads one result line:
#   @@wstest pass <heap> | @@wstest fail <ExceptionName> <heap>
# <heap> is the peak GC heap in bytes where the port tracks it
# (micropython.mem_peak, unix port) else the heap in use after the test.
import gc
import sys

import micropython

MARK = "@@wstest"


def _heap():
    if hasattr(micropython, "mem_peak"):
        return micropython.mem_peak()
    return gc.mem_alloc()


def run(module_name, function_name):
    gc.collect()
    outcome = "pass"
    try:
        module = __import__(module_name)
        getattr(module, function_name)()
    except Exception as e:  # noqa: BLE001 - every failure is reported, then raised on the host
        sys.print_exception(e)
        outcome = "fail " + type(e).__name__
    heap = _heap()
    sys.modules.pop(module_name, None)
    print(MARK, outcome, heap)


def raises(exc_type, fn, *args):
    """Assert that fn(*args) raises exc_type; return the exception."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError("expected %s" % exc_type.__name__)
