# SenML packs in CBOR (RFC 8428 section 6): a batch of vitals as records
# grouped per quantity. The first record of each group sets the base name
# (<device>/<quantity>) and base unit; the first record of the pack also
# sets the base time; every other record is just {v, t}, so a reading costs
# a few bytes.
from micropython import const

from wearsafe import cbor

BN = const(-2)
BT = const(-3)
BU = const(-4)
N = const(0)
U = const(1)
V = const(2)
T = const(6)

# quantity name -> SenML unit (RFC 8428 section 12.1)
UNITS = {
    "heart-rate": "beat/min",
    "spo2": "/",  # a ratio, 0..1
    "body-temp": "Cel",
    "steps": "count",
}


def encode_pack(device, base_time, series):
    """series: {quantity: [(seconds after base_time, value), ...]} -> SenML-CBOR bytes."""
    out = bytearray()
    records = sum(len(points) for points in series.values())
    cbor.head(out, 4, records)
    first_of_pack = True
    for quantity in series:
        unit = UNITS.get(quantity)
        if unit is None:
            raise ValueError("senml: unknown quantity %r" % quantity)
        first_of_group = True
        for t, value in series[quantity]:
            record = {}
            if first_of_group:
                record[BN] = device + "/" + quantity
                record[BU] = unit
                if first_of_pack:
                    record[BT] = base_time
                first_of_pack = first_of_group = False
            record[V] = value
            if t:
                record[T] = t
            cbor.encode_into(out, record)
    return bytes(out)


def resolve(records):
    """Resolved records (RFC 8428 section 4.6): [{"n", "u", "v", "t"}, ...]."""
    base_name, base_time, base_unit = "", 0, None
    resolved = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError("senml: a record must be a map")
        base_name = record.get(BN, base_name)
        base_time = record.get(BT, base_time)
        base_unit = record.get(BU, base_unit)
        resolved.append({
            "n": base_name + record.get(N, ""),
            "u": record.get(U, base_unit),
            "v": record.get(V),
            "t": base_time + record.get(T, 0),
        })
    return resolved
