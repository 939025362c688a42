# The device side of tests/bench/bench_heap32.py, run by the unix port (one
# process per run) and by the webassembly port (one MicroPython instance per
# run, driven by ../run.mjs). Each run is a generator; every `yield label`
# is a boundary between two steps of the application.
#
# The webassembly port collects garbage only when control returns to
# JavaScript (gc.collect() inside Python code only asks for it), so Node
# calls step() once per boundary: what the heap holds when a step ends is
# what it held before plus everything the step allocated (a bound on the
# step's peak, a loose one where the step makes garbage), and the collection
# on return gives the live heap after it.
# The unix port runs the same steps straight through (its peak is the smallest
# heap they complete in) or with a collection at each boundary.
import gc
import sys


def standins():
    """Our socket and ssl on both ports; our cryptolib where the port has none."""
    import h32_socket
    import h32_ssl

    sys.modules["usocket"] = h32_socket  # what umqtt.simple imports
    sys.modules["socket"] = h32_socket
    sys.modules["ssl"] = h32_ssl
    try:
        import cryptolib  # noqa: F401
    except ImportError:
        import h32_cryptolib

        sys.modules["cryptolib"] = h32_cryptolib


def boot():
    """What the device does at power-on: boot.py (the boot selector), then main.py's
    imports: the board module and the application."""
    import bootsel

    bootsel.boot()
    yield "boot"
    import board  # noqa: F401

    yield "board"
    import wearsafe.app  # noqa: F401

    yield "import"


class App:
    """wearsafe.app.run(), a step at a time: the same objects made by the same
    functions, and the same calls each second, in the same order (the watchdog and
    the crash report where the application has them; not the crash streak's reset,
    an NVS write once a message is delivered)."""

    def __init__(self):
        import board
        from wearsafe import VERSION, app, keystore, sensing, settings
        from wearsafe.batch import Batch

        self.board = board
        self.version = VERSION
        self.until = lambda: board.ticks_add(board.ticks_ms(), app.WORK_MS)  # a round's work
        state = board.state_dir()
        config = settings.load(state + "/settings.json")
        self.store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
        self.dog = None
        if hasattr(app, "WATCHDOG_MS") and hasattr(board, "watchdog"):
            self.dog = board.watchdog(app.WATCHDOG_MS)
        self.sealer, self.uplink = app.start(state, config, self.store)
        self.updates = app.start_updates(state, self.uplink.link, config["confirm_timeout_s"])
        self.hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
        self.batch = Batch(self.store.device_id(), config["batch_seconds"])
        self.batch.clear(board.epoch_s())
        fields = [("version", VERSION)]
        if hasattr(app, "store_nvs"):
            from wearsafe import crash

            fields += crash.report(app.store_nvs())
        self.status(fields)
        self.vitals = sensing.run(self.hub, board)

    def status(self, fields):
        from wearsafe import senml

        message = self.sealer.seal(senml.encode_status(self.store.device_id(),
                                                       self.board.epoch_s(), fields))
        self.uplink.outbox.append(message)

    def second(self):
        """One pass of run()'s loop, with a boundary after each of its parts."""
        vitals = next(self.vitals)
        if self.dog:
            self.dog.feed()
        yield "sense"
        if self.batch.add(vitals):
            self.batch.note_dropped(self.uplink.outbox.take_dropped())
            self.uplink.outbox.append(self.sealer.seal(self.batch.pack()))
            self.batch.clear(self.board.epoch_s())
            yield "seal"
        connected = self.uplink.link.connected
        self.uplink.service(self.until())
        yield "uplink" if connected else "connect"
        if self.updates:
            reports = self.updates.service(self.uplink, self.until())
            if reports:
                self.status([("version", self.version)] + reports)
            yield "updates"


def run_import():
    yield from boot()


def run_app(seconds):
    """wearsafe.app.run() itself, in one step: the check on App (unix port only)."""
    yield from boot()
    import wearsafe.app

    wearsafe.app.run(seconds)
    yield "app"


def run_steady(seconds):
    """Sensor loop, batches sealed and stored in the outbox, published (PUBACK)."""
    yield from boot()
    app = App()
    yield "start"
    for _ in range(seconds):
        yield from app.second()


def run_ota(seconds):
    """The same loop, and an update announced once the first batch is published:
    chunks fetched into the streaming verifier, the final checks, the install, the
    reset (within `seconds`)."""
    yield from boot()
    app = App()
    yield "start"
    try:
        for _ in range(seconds):
            yield from app.second()
    except SystemExit:  # board.reset() once the update is installed
        yield "reset"
        return
    raise AssertionError(f"no update installed in {seconds} s")


def run_reconnect(seconds):
    """The same loop for `seconds`, then the session drops and Link.connect() runs
    again."""
    yield from boot()
    app = App()
    yield "start"
    for _ in range(seconds):
        yield from app.second()
    link = app.uplink.link
    link.drop("heap bench")
    yield "drop"
    link.connect()
    yield "reconnect"


_run = None


def start(name, *args):
    """Begin run `name` (import, steady, ota, reconnect)."""
    global _run
    _run = globals()["run_" + name](*args)


def step():
    """Run to the next boundary: "<label> <heap in use then>" ("None ..." at the end).
    A string: Node gets it as a value, and no object stays referenced from JavaScript."""
    try:
        label = next(_run)
    except StopIteration:
        label = None
    used = gc.mem_alloc()
    gc.collect()  # the webassembly port collects when control returns to JavaScript
    return f"{label} {used}"


def live():
    gc.collect()
    return gc.mem_alloc()


def straight(name, *args):
    """The whole run at once (the unix port's smallest-heap search)."""
    for _ in globals()["run_" + name](*args):
        pass


def boundaries(name, *args):
    """The unix port: the live heap at every boundary, printed; then the modules loaded."""
    start(name, *args)
    while True:
        label = step().split()[0]
        if label == "None":
            break
        print("live", label, live())
    print("modules", " ".join(sorted(sys.modules)))
