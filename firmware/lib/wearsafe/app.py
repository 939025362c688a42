# The application: the sensor loop gives vitals each second; a batch of them
# (default a minute) becomes one SenML pack, sealed under the device's key
# and stored in the outbox; the outbox drains over the TLS link, in order,
# each message removed only once the broker has acknowledged it. Logs hold
# sizes, counts and states, never a reading.
import gc

import board
from wearsafe import VERSION, energy, keystore, log, realtime, senml, sensing, settings
from wearsafe.batch import Batch
from wearsafe.link import Link, LinkError, up_topic
from wearsafe.outbox import Outbox
from wearsafe.seal import Sealer

# Each second the loop seals what the sensing task has completed, then gives the
# link and updates WORK_MS to start operations in (one in progress may run over:
# the sensing tasks run inside its waits, realtime.py). SEND_PER_SECOND bounds
# the messages of one round where time passes only in sleeps (the tests' clock).
LOOP_MS = 1000
WORK_MS = 500
SEND_PER_SECOND = 20
# The watchdog resets a hung device. Fed every second; the longest legitimate
# stall is a few link timeouts (ack_timeout_s each) during a reconnect or a fetch.
WATCHDOG_MS = 300_000
# An upload window stays open until the outbox is empty and the link has been up
# WINDOW_MIN_MS (for update announcements to come in), at most WINDOW_MAX_MS unless
# an update is downloading; a window that could not empty the outbox of an alert
# comes again after RETRY_MS. Always connected, energy counts go out every REPORT_MS.
WINDOW_MIN_MS = 3000
WINDOW_MAX_MS = 120_000
RETRY_MS = 30_000
REPORT_MS = 900_000


class Uplink:
    """The outbox and the link: store every sealed message, deliver in upload windows
    (or always, with upload_interval_s 0 or on the charger)."""

    def __init__(self, link, outbox, topic, interval_s=0, backlog=1):
        self.link = link
        self.outbox = outbox
        self.topic = topic
        self.delivered = 0
        self._was_up = None  # True/False: the state last logged; None: none this window
        self._connects = 0
        self.interval_ms = interval_s * 1000
        self.backlog = backlog
        self.meter = energy.Energy(board)
        self.urgent = False  # an alert waits in the outbox: open a window now
        self.on_open = None  # called as each window after the boot's opens (energy report)
        self.windows = 0
        self._charging = False
        self.is_open = False
        self._opened = self._up_since = None
        self._next = board.ticks_ms()  # the first window: at boot

    def service(self, until, busy=False):
        """Open a window when one is due, connect, deliver until `until` (ticks), and
        close the window once its work is done (`busy`: an update is downloading)."""
        charging = board.on_charger()
        if charging and not self._charging and self.is_open and self.on_open:
            self.on_open()  # docked: the counts go out (a window opening sends them anyway)
        self._charging = charging
        always = charging or not self.interval_ms
        if not self.is_open:
            if not (always or self.urgent or len(self.outbox) >= self.backlog
                    or board.ticks_diff(board.ticks_ms(), self._next) >= 0):
                return
            self._open()
        up = self.link.ensure()
        joined = board.network_up()
        self.meter.radio(energy.JOINED if joined else energy.JOINING)
        if up or joined or self._was_up:  # joining is not a drop; a refused connect is
            self._note(up)
        if self._was_up:
            if self._up_since is None:
                self._up_since = board.ticks_ms()
            self._deliver(until)
            self._note(self.link.connected)  # a publish or keepalive may have dropped it
        if not (always or busy) and self._done():
            self._close()

    def _open(self):
        self.is_open = True
        self._was_up = None  # the window's first state is logged once joined
        self._opened = board.ticks_ms()
        self._up_since = None
        board.radio(True)
        self.meter.radio(energy.JOINING)
        if self.on_open and self.windows:
            self.on_open()
        self.windows += 1

    def _done(self):
        now = board.ticks_ms()
        if board.ticks_diff(now, self._opened) >= WINDOW_MAX_MS:
            return True
        return (not len(self.outbox) and self._up_since is not None
                and board.ticks_diff(now, self._up_since) >= WINDOW_MIN_MS)

    def _close(self):
        self.link.close()
        board.radio(False)
        self.meter.radio(energy.RADIO_OFF)
        self.is_open = False
        self.urgent = bool(len(self.outbox)) and self.urgent
        wait = RETRY_MS if self.urgent else self.interval_ms
        self._next = board.ticks_add(board.ticks_ms(), wait)
        log.info("radio-off", "outbox", len(self.outbox), "next-s", wait // 1000)

    def _note(self, up):
        """Log each change of the link's state. A drop and its reconnect between two
        looks (an update's fetch or poll drops the link too) show as a new connect."""
        if up and self._was_up and self.link.connects != self._connects:
            self._note(False)
        self._connects = self.link.connects
        if up == self._was_up:
            return
        if up:
            log.info("link-up", "connects", self.link.connects, "outbox", len(self.outbox))
        else:
            log.warn("link-down", self.link.last_error)
        self._was_up = up

    def _deliver(self, until):
        for _ in range(SEND_PER_SECOND):
            record = self.outbox.peek()
            if record is None:
                self.link.keepalive()
                return
            try:
                self.link.publish(self.topic, record[1])
            except LinkError:
                return  # stays in the outbox; the link backs off and retries
            self.outbox.remove(record[0])
            self.delivered += 1
            if board.ticks_diff(until, board.ticks_ms()) <= 0:
                return


class Updates:
    """Signed updates: fetched while the outbox is empty, confirmed once a message
    has reached the broker, reported in sealed status messages."""

    def __init__(self, state, link, timeout_s):
        from wearsafe.ota import install, updater

        trust = install.load_trust(state + "/certs/update-trust.json")
        self.installer = install.Installer(board, trust, install.Counters(board.nvs("ota")))
        running = {updater.image.KIND_APP: VERSION,
                   updater.image.KIND_FIRMWARE: self.installer.firmware_version()}
        self.updater = updater.Updater(link, self.installer, board, running)
        # an app bundle or a firmware on trial: unconfirmed in time, it is rolled back
        self.on_trial = self.installer.record.on_trial or self.installer.firmware_on_trial()
        self.seconds_left = timeout_s
        self.confirmed = False

    def service(self, uplink, until):
        """One round's update work, up to `until` (ticks); the status lines to send."""
        reports = self.updater.reports
        self.updater.reports = []
        if uplink.delivered and not self.confirmed:
            self.confirmed = True
            reports += self.installer.confirm()
        elif self.on_trial and not self.confirmed:
            self.seconds_left -= 1
            if self.seconds_left <= 0:
                log.error("update-unconfirmed", "no message reached the broker: resetting, "
                                                "the previous image comes back")
                board.reset()
        if uplink.link.connected:
            uplink.link.poll()
            # an image on trial is kept or rolled back, and that reported, before the
            # next one may start: installing ends in a reset
            if not (reports or len(uplink.outbox)) and (self.confirmed or not self.on_trial):
                self.updater.service(until)
        return [("update", "%s %s %s" % (event, info["version"],
                                          info.get("reason", info.get("kind"))))
                for event, info in reports]


def start_updates(state, link, timeout_s):
    from wearsafe.ota.install import UpdateError

    try:
        return Updates(state, link, timeout_s)
    except UpdateError as e:
        log.warn("updates-off", e)
        return None


def start(state, config, store):
    device_id = store.device_id()
    topic = up_topic(device_id)
    link = Link(config, device_id, state + "/certs", board)
    outbox = Outbox(state + "/outbox", segments=config["outbox_segments"])
    return Sealer(store, topic), Uplink(link, outbox, topic, config["upload_interval_s"],
                                        config["upload_backlog"])


def run(seconds=None):
    from wearsafe import crash

    log.info("boot", "wearsafe", VERSION, "board", board.NAME)
    state = board.state_dir()
    config = settings.load(state + "/settings.json")
    store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
    if not store.provisioned():
        log.error("unprovisioned", "no device key: provision the device; nothing is sent")
        return
    dog = board.watchdog(WATCHDOG_MS)
    sealer, uplink = start(state, config, store)
    from wearsafe.alerts import Alerts

    alerts = Alerts(config)
    updates = start_updates(state, uplink.link, config["confirm_timeout_s"])
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    batch = Batch(store.device_id(), config["batch_seconds"])
    batch.clear(board.epoch_s())
    confirmed_run = False

    def seal_status(fields, when):
        message = sealer.seal(senml.encode_status(store.device_id(), when, fields))
        uplink.outbox.append(message)
        log.info("sealed", len(message), "bytes", "piv", sealer.partial_iv, "status",
                 "outbox", len(uplink.outbox))

    def status(fields):
        # since boot: the FIFOs' gaps (the packs report each where it happened)
        seal_status([("ppg-lost-total", "%d" % hub.ppg_lost),
                     ("accel-overrun-total", "%d" % hub.accel_overruns)] + fields,
                    board.epoch_s())

    def report_energy():
        status(uplink.meter.fields(uplink.link.connects))

    uplink.on_open = report_energy
    status([("version", VERSION)] + crash.report(store_nvs()))
    sensed = [0]  # seconds of vitals taken, up to `seconds`
    ready = []  # (pack, readings) the sensing task completed, for the loop to seal
    raised = []  # (alert kind, Unix time) for the loop to seal and send at once

    def second(vitals):  # the sensing task's, each second, whatever the loop is doing
        if seconds is not None and sensed[0] >= seconds:
            return
        sensed[0] += 1
        kind = alerts.check(vitals)
        if kind:
            raised.append((kind, board.epoch_s()))
        if batch.add(vitals, board.epoch_s()):
            batch.note_dropped(uplink.outbox.take_dropped())
            ready.append((batch.pack(), batch.readings()))
            batch.clear(board.epoch_s())

    polling = sensing.start(hub, board, second)
    uplink.service(board.ticks_ms())  # the boot's window: the radio joins during the first second
    tick = reported = board.ticks_ms()
    while True:
        tick = board.ticks_add(tick, LOOP_MS)
        wait = board.ticks_diff(tick, board.ticks_ms())
        if wait < 0:  # the last round ran over: start the next one now
            tick, wait = board.ticks_ms(), 0
        realtime.sleep_ms(board, wait)
        dog.feed()
        while ready:
            pack, readings = ready.pop(0)
            message = sealer.seal(pack)
            uplink.outbox.append(message)
            log.info("sealed", len(message), "bytes", "piv", sealer.partial_iv,
                     readings, "readings", "outbox", len(uplink.outbox),
                     "heap", gc.mem_alloc(), "ppg-lost", hub.ppg_lost,
                     "accel-overrun", hub.accel_overruns, "stall-ms", hub.longest_stall_ms)
            hub.longest_stall_ms = 0  # the longest of each batch
        while raised:
            kind, when = raised.pop(0)
            seal_status([("alert", kind)], when)
            uplink.urgent = True
        if not uplink.interval_ms and board.ticks_diff(board.ticks_ms(), reported) >= REPORT_MS:
            reported = board.ticks_ms()
            report_energy()
        until = board.ticks_add(board.ticks_ms(), WORK_MS)
        uplink.service(until, busy=bool(updates and updates.updater.busy))
        realtime.set_period(polling, sensing.POLL_MS if uplink.is_open else sensing.POLL_ASLEEP_MS)
        if updates:
            reports = updates.service(uplink, until)
            if reports:
                status([("version", VERSION)] + reports)
        if uplink.delivered and not confirmed_run:
            confirmed_run = True
            crash.clear_streak(store_nvs())
        if seconds is not None and sensed[0] >= seconds and not ready:
            break
    realtime.stop()
    uplink.link.close()


def store_nvs():
    from wearsafe.crash import NAMESPACE

    return board.nvs(NAMESPACE)


def main():
    """The device's entry point: an exception is logged, counted for the next status
    message and followed by a growing pause before the reset, never a tight reboot loop."""
    try:
        run()
    except Exception as e:  # noqa: BLE001 - anything: the device must come back
        from wearsafe import crash

        crash.note(store_nvs(), e, board.sleep_ms)
        return True
    return False
