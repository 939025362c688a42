# CBOR encoding (RFC 8949 Appendix A examples) and SenML packs.
from binascii import unhexlify

from wearsafe import cbor, senml
from wstest import raises

# (value, encoding) from RFC 8949 Appendix A, preferred serialization
EXAMPLES = (
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"),
    (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-1, "20"), (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.5, "f93e00"), (65504.0, "f97bff"),
    (5.960464477539063e-08, "f90001"), (0.00006103515625, "f90400"), (-4.0, "f9c400"),
    (100000.0, "fa47c35000"), (3.4028234663852886e38, "fa7f7fffff"), (1.1, "fb3ff199999999999a"),
    (-4.1, "fbc010666666666666"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"), ([], "80"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
)


def test_rfc8949_examples_encode_and_decode():
    for value, hexed in EXAMPLES:
        data = unhexlify(hexed)
        assert cbor.encode(value) == data, hexed
        assert cbor.decode(data) == value, hexed


def test_decoder_reads_half_floats_and_tags():
    assert cbor.decode(unhexlify("f93c00")) == 1.0
    assert cbor.decode(unhexlify("f9c400")) == -4.0
    assert cbor.decode(unhexlify("f90001")) == 5.960464477539063e-08
    assert cbor.decode(unhexlify("c11a514b67b0")) == cbor.Tag(1, 1363896240)


def test_malformed_input_raises_decode_errors_only():
    for hexed in ("", "18", "1a0000", "5f", "9f", "62c3", "83010203ff", "9bffffffffffffffff",
                  "bbffffffffffffffff", "62c328", "fc", "a18001", "0000"):
        raises(cbor.DecodeError, cbor.decode, unhexlify(hexed))
    deep = b"\x81" * 40 + b"\x00"
    raises(cbor.DecodeError, cbor.decode, deep)


def test_senml_pack_resolves_per_rfc8428():
    data = senml.encode_pack("d1", 1700000000, {"heart-rate": [(0, 72), (1, 73)],
                                                "body-temp": [(0, 36.625)]})
    records = senml.resolve(cbor.decode(data))
    assert records == [
        {"n": "d1/heart-rate", "u": "beat/min", "v": 72, "t": 1700000000},
        {"n": "d1/heart-rate", "u": "beat/min", "v": 73, "t": 1700000001},
        {"n": "d1/body-temp", "u": "Cel", "v": 36.625, "t": 1700000000},
    ]


def test_a_reading_after_the_first_costs_a_few_bytes():
    one = senml.encode_pack("d1", 1700000000, {"heart-rate": [(0, 72)]})
    two = senml.encode_pack("d1", 1700000000, {"heart-rate": [(0, 72), (24, 73)]})
    assert len(two) - len(one) == len(unhexlify("a20201061818")) == 6  # {2: 73 - bv, 6: 24}


def test_base_value_only_where_every_reading_survives_the_round_trip():
    for values in ([36.5, 36.50390625, 36.49609375], [0.97, 0.96, 0.99], [1e-30, 1e30], [5, -7]):
        data = senml.encode_pack("d", 0, {"body-temp": [(i, v) for i, v in enumerate(values)]})
        assert [r["v"] for r in senml.resolve(cbor.decode(data))] == values


def test_unknown_quantity_is_refused():
    raises(ValueError, senml.encode_pack, "d1", 0, {"mood": [(0, 1)]})
