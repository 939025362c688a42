# CBOR (RFC 8949): the encoder for what the device sends and a strict
# decoder for what it receives. Deterministic encoding (RFC 8949 section
# 4.2): shortest integer and length heads, map keys sorted, floats in the
# shortest of float16, float32 and float64 that holds them exactly. Definite
# lengths only. The decoder never trusts a length before checking it
# against the bytes that are left.
import math
import struct

from micropython import const

_MAX_DEPTH = const(16)


class DecodeError(ValueError):
    pass


class Tag:
    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and (self.tag, self.value) == (other.tag, other.value)


def head(out, major, n):
    if n < 24:
        out.append(major << 5 | n)
    elif n < 0x100:
        out.append(major << 5 | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major << 5 | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(major << 5 | 26)
        out.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        out.append(major << 5 | 27)
        out.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("cbor: integer too large for 64 bits")


def encode_into(out, obj):
    """Append the encoding of obj to the bytearray out."""
    if obj is False or obj is True or obj is None:
        out.append(0xF4 if obj is False else 0xF5 if obj is True else 0xF6)
    elif isinstance(obj, int):
        if obj >= 0:
            head(out, 0, obj)
        else:
            head(out, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, str):
        data = obj.encode()
        head(out, 3, len(data))
        out.extend(data)
    elif isinstance(obj, (list, tuple)):
        head(out, 4, len(obj))
        for item in obj:
            encode_into(out, item)
    elif isinstance(obj, dict):
        # Deterministic: keys sorted by their encoding (RFC 8949 section 4.2.1);
        # MicroPython dicts have no stable order of their own.
        head(out, 5, len(obj))
        for encoded, key in sorted((encode(k), k) for k in obj):
            out.extend(encoded)
            encode_into(out, obj[key])
    elif isinstance(obj, float):
        half = _to_half(obj)
        single = struct.pack(">f", obj)
        if half is not None:
            out.append(0xF9)
            out.extend(half.to_bytes(2, "big"))
        elif struct.unpack(">f", single)[0] == obj:
            out.append(0xFA)
            out.extend(single)
        else:
            out.append(0xFB)
            out.extend(struct.pack(">d", obj))
    elif isinstance(obj, Tag):
        head(out, 6, obj.tag)
        encode_into(out, obj.value)
    else:
        raise TypeError("cbor: cannot encode %s" % type(obj).__name__)
    return out


def encode(obj):
    return bytes(encode_into(bytearray(), obj))


def _to_half(value):
    """The IEEE 754 half-precision bits of value if it is exactly representable, else None."""
    if value != value or value in (float("inf"), float("-inf")):
        return None
    sign = 0x8000 if value < 0 or (value == 0 and str(value)[0] == "-") else 0
    value = abs(value)
    if value == 0:
        return sign
    mantissa, exp = math.frexp(value)  # value = mantissa * 2**exp, 0.5 <= mantissa < 1
    biased = exp + 14
    if biased >= 31:
        return None
    if biased >= 1:
        frac = (mantissa * 2 - 1) * 1024
        return sign | biased << 10 | int(frac) if frac == int(frac) else None
    frac = value * 2.0 ** 24  # subnormal: value = frac * 2**-24
    return sign | int(frac) if frac == int(frac) else None


def _half(h):
    exp, frac = (h >> 10) & 0x1F, h & 0x3FF
    if exp == 0:
        value = frac * 2.0 ** -24
    elif exp == 31:
        value = float("inf") if frac == 0 else float("nan")
    else:
        value = (1024 + frac) * 2.0 ** (exp - 25)
    return -value if h & 0x8000 else value


class _Reader:
    def __init__(self, data):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise DecodeError("cbor: truncated: %d bytes needed at offset %d, %d left"
                              % (n, self.pos, len(self.data) - self.pos))
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def item(self, depth):
        if depth > _MAX_DEPTH:
            raise DecodeError("cbor: nested deeper than %d" % _MAX_DEPTH)
        first = self.take(1)[0]
        major, info = first >> 5, first & 0x1F
        if major == 7:
            return self.simple(info)
        if info < 24:
            n = info
        elif info <= 27:
            n = int.from_bytes(self.take(1 << (info - 24)), "big")
        else:
            raise DecodeError("cbor: indefinite or reserved length at offset %d" % (self.pos - 1))
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            try:
                return str(self.take(n), "utf-8")
            except UnicodeError:
                raise DecodeError("cbor: text string is not UTF-8")
        if major == 6:
            return Tag(n, self.item(depth + 1))
        # Every array item or map entry takes at least one byte: a length
        # beyond what is left is rejected before anything is allocated.
        if n > len(self.data) - self.pos:
            raise DecodeError("cbor: %d items announced, %d bytes left"
                              % (n, len(self.data) - self.pos))
        if major == 4:
            return [self.item(depth + 1) for _ in range(n)]
        result = {}
        for _ in range(n):
            key = self.item(depth + 1)
            if isinstance(key, (list, dict, Tag)):  # unhashable (found by fuzzing)
                raise DecodeError("cbor: map key must not be an array, map or tag")
            result[key] = self.item(depth + 1)
        return result

    def simple(self, info):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return _half(int.from_bytes(self.take(2), "big"))
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise DecodeError("cbor: unsupported simple value %d" % info)


def decode(data):
    """Decode exactly one CBOR item; DecodeError on anything malformed or left over."""
    reader = _Reader(data)
    obj = reader.item(0)
    if reader.pos != len(reader.data):
        raise DecodeError("cbor: %d bytes after the item" % (len(reader.data) - reader.pos))
    return obj
