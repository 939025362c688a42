# SenML packs in CBOR (RFC 8428 section 6): a batch of vitals as records
# grouped per quantity. The first record of each group sets the base name
# (<device>/<quantity>), base unit and base value (its first reading, when
# every reading of the group survives the round trip v = bv + (v - bv)
# exactly); the first record of the pack also sets the base time. Every
# other record is just {v: v - bv, t}, so a reading costs a few bytes.
from micropython import const

from wearsafe import cbor

BN = const(-2)
BT = const(-3)
BU = const(-4)
BV = const(-5)
N = const(0)
U = const(1)
V = const(2)
VS = const(3)
T = const(6)

# quantity name -> SenML unit (RFC 8428 section 12.1)
UNITS = {
    "heart-rate": "beat/min",
    "spo2": "/",  # a ratio, 0..1
    "body-temp": "Cel",
    "steps": "count",
    "outbox-dropped": "count",  # messages the full outbox had to drop
    "ppg-lost": "count",  # PPG samples the FIFO dropped (the loop came late)
    "accel-overrun": "count",  # accelerometer FIFO overruns (each lost samples)
}


def _base_value(points):
    base = points[0][1]
    for _, value in points:
        if base + (value - base) != value:
            return 0
    return base


def _number(x):
    # An integral float costs 1-3 bytes as an int, 3 or more as a float.
    return int(x) if isinstance(x, float) and x == int(x) and abs(x) < 1 << 53 else x


def encode_pack(device, base_time, series):
    """series: {quantity: [(seconds after base_time, value), ...]} -> SenML-CBOR bytes."""
    out = bytearray()
    cbor.head(out, 4, sum(len(points) for points in series.values()))
    first_of_pack = True
    for quantity in series:
        unit = UNITS.get(quantity)
        if unit is None:
            raise ValueError("senml: unknown quantity %r" % quantity)
        points = series[quantity]
        base = _base_value(points) if points else 0
        for i, (t, value) in enumerate(points):
            record = {V: _number(value - base)}
            if i == 0:
                record[BN] = device + "/" + quantity
                record[BU] = unit
                if base:
                    record[BV] = base
                if first_of_pack:
                    record[BT] = base_time
                    first_of_pack = False
            if t:
                record[T] = t
            cbor.encode_into(out, record)
    return bytes(out)


def encode_status(device, base_time, fields):
    """fields: [(name, text), ...] -> a SenML-CBOR pack of string values (vs)."""
    out = bytearray()
    cbor.head(out, 4, len(fields))
    for i, (name, text) in enumerate(fields):
        record = {N: name, VS: text}
        if i == 0:
            record[BN] = device + "/"
            record[BT] = base_time
        cbor.encode_into(out, record)
    return bytes(out)


def resolve(records):
    """Resolved records (RFC 8428 section 4.6): [{"n", "u", "v", "t"}, ...]."""
    base_name, base_time, base_unit, base_value = "", 0, None, 0
    resolved = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError("senml: a record must be a map")
        base_name = record.get(BN, base_name)
        base_time = record.get(BT, base_time)
        base_unit = record.get(BU, base_unit)
        base_value = record.get(BV, base_value)
        resolved.append({
            "n": base_name + record.get(N, ""),
            "u": record.get(U, base_unit),
            "v": base_value + record[V] if V in record else record.get(VS),
            "t": base_time + record.get(T, 0),
        })
    return resolved
