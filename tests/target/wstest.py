# The device half of the target test harness (runs on MicroPython).
# The host runs one test function per call and reads one result line:
#   @@wstest pass <alloc> <live> | @@wstest fail <ExceptionName> <alloc> <live>
# <alloc>: bytes the test allocated in all (micropython.mem_total, where the
# port counts it, else -1); <live>: GC heap still in use after the test and a
# collection, above what was in use before it. The heap limit itself is the
# bound on the peak: a test that needs more fails with MemoryError.
import gc
import sys

import micropython

MARK = "@@wstest"


def _allocated():
    return micropython.mem_total() if hasattr(micropython, "mem_total") else -1


def run(module_name, function_name):
    loaded = set(sys.modules)
    outcome = "pass"
    alloc = live = 0
    try:
        function = getattr(__import__(module_name), function_name)
        gc.collect()
        live, alloc = gc.mem_alloc(), _allocated()
        function()
    except Exception as e:  # every failure is reported, then raised on the host
        sys.print_exception(e)
        outcome = "fail " + type(e).__name__
    function = None
    alloc = _allocated() - alloc if alloc >= 0 else -1
    gc.collect()
    live = gc.mem_alloc() - live
    # Unload what the test loaded: on a board, which runs every test in one
    # process, the next test starts from the same heap as this one did.
    for name in list(sys.modules):
        if name not in loaded:
            del sys.modules[name]
    gc.collect()
    print(MARK, outcome, alloc, live)


def raises(exc_type, fn, *args):
    """Assert that fn(*args) raises exc_type; return the exception."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError("expected %s" % exc_type.__name__)
