# The application: the sensor loop gives vitals each second; a minute of
# them becomes one SenML pack, sealed under the device's key. Until the
# transport lands (issue #5) the app logs what it would publish: sizes and
# counts, never a reading.
import board
from wearsafe import VERSION, keystore, log, sensing, settings
from wearsafe.batch import Batch
from wearsafe.seal import Sealer


def topic(device_id):
    return "devices/%s/up" % device_id


def run(seconds=None):
    log.info("boot", "wearsafe", VERSION, "board", board.NAME)
    config = settings.load(board.state_dir() + "/settings.json")
    store = keystore.Keystore(board.nvs(keystore.NAMESPACE))
    if store.provisioned():
        device_id = store.device_id()
        sealer = Sealer(store, topic(device_id))
    else:
        device_id, sealer = "unprovisioned", None
        log.warn("unprovisioned", "payloads are packed but not sealed; provision the device")
    hub = sensing.SensorHub(board.i2c(), board.I2C_NAME, board.sleep_ms)
    batch = Batch(device_id, config["batch_seconds"])
    batch.clear(board.epoch_s())
    for vitals in sensing.run(hub, board, seconds):
        if batch.add(vitals):
            pack = batch.pack()
            message = sealer.seal(pack) if sealer else pack
            log.info("would-publish", len(message), "bytes", batch.readings(), "readings",
                     "sealed" if sealer else "UNSEALED", "to", topic(device_id))
            batch.clear(board.epoch_s())


def main():
    try:
        run()
    except KeyboardInterrupt:
        log.info("stopped")
