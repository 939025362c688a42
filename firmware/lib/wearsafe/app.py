# The application: the sensor loop gives vitals each second; a batch of them
# (default a minute) becomes one SenML pack, sealed under the device's key
# and stored in the outbox; the outbox drains over the TLS link, in order,
# each message removed only once the broker has acknowledged it. Logs hold
# sizes, counts and states, never a reading.
import gc

import board
from wearsafe import VERSION, keystore, log, sensing, settings
from wearsafe.batch import Batch
from wearsafe.link import Link, LinkError, up_topic
from wearsafe.outbox import Outbox
from wearsafe.seal import Sealer

SEND_PER_SECOND = 20  # outbox messages sent between two sensor readings


class Uplink:
    """The outbox and the link: store every sealed message, deliver when possible."""

    def __init__(self, link, outbox, topic):
        self.link = link
        self.outbox = outbox
        self.topic = topic
        self.delivered = 0
        self._was_up = None  # the first state is logged either way

    def service(self):
        up = self.link.ensure()
        if up != self._was_up:
            if up:
                log.info("link-up", "connects", self.link.connects, "outbox", len(self.outbox))
            else:
                log.warn("link-down", self.link.last_error)
            self._was_up = up
        if not up:
            return
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


def start(state, config, store):
    device_id = store.device_id()
    topic = up_topic(device_id)
    link = Link(config, device_id, state + "/certs", board)
    outbox = Outbox(state + "/outbox", segments=config["outbox_segments"])
    return Sealer(store, topic), Uplink(link, outbox, topic)


def run(seconds=None):
    log.info("boot", "wearsafe", VERSION, "board", board.NAME)
    state = board.state_dir()
    config = settings.load(state + "/settings.json")
    store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
    if not store.provisioned():
        log.error("unprovisioned", "no device key: provision the device; nothing is sent")
        return
    sealer, uplink = start(state, config, store)
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    batch = Batch(store.device_id(), config["batch_seconds"])
    batch.clear(board.epoch_s())
    for vitals in sensing.run(hub, board, seconds):
        if batch.add(vitals):
            batch.note_dropped(uplink.outbox.take_dropped())
            message = sealer.seal(batch.pack())
            uplink.outbox.append(message)
            log.info("sealed", len(message), "bytes", batch.readings(), "readings",
                     "outbox", len(uplink.outbox), "heap", gc.mem_alloc())
            batch.clear(board.epoch_s())
        uplink.service()
    uplink.link.close()


def main():
    run()
