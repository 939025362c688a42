# Register-level drivers for the wearable's sensors, on any bus object with
# machine.I2C's memory API (readfrom_mem_into, writeto_mem). They know
# nothing of the application; the read paths allocate nothing.


class SensorError(Exception):
    pass


def probe(bus, bus_name, address, register, expected, chip):
    """Check a chip answers at address with the expected id byte; SensorError if not."""
    buf = bytearray(1)
    try:
        bus.readfrom_mem_into(address, register, buf)
    except OSError:
        raise SensorError("%s: no answer on %s at address 0x%02x (expected id 0x%02x at "
                          "register 0x%02x): check wiring and power"
                          % (chip, bus_name, address, expected, register))
    if buf[0] != expected:
        raise SensorError("%s: wrong id on %s at address 0x%02x: register 0x%02x reads 0x%02x, "
                          "expected 0x%02x" % (chip, bus_name, address, register, buf[0],
                                               expected))
