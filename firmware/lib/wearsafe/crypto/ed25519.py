# Ed25519 signature verification (RFC 8032 section 5.1.7), cofactorless:
# [S]B == R + [k]A, checked as encode([S]B + [k](-A)) == R, which also
# rejects an R that does not decode or is not canonical. A public key that
# does not decode or is not canonical (y >= p) and S >= L are rejected.
# Points are in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z,
# x*y = T/Z; the two scalar multiplications share their doublings (Straus).
from wearsafe import realtime
from wearsafe.crypto.sha512 import sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
D2 = 2 * D % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
_IDENTITY = (0, 1, 1, 0)


def _add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * D2 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p1):
    x1, y1, z1, _ = p1
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    e = ((x1 + y1) * (x1 + y1) - a - b) % P
    g = b - a  # twisted Edwards a = -1: D = -A
    f = g - c
    h = -a - b
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _decode(s):
    """The point encoded in 32 bytes, or None if it is not a canonical point encoding."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx == (P - u) % P:
        x = x * SQRT_M1 % P
    elif vxx != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _encode(point):
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


B = _decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def _double_scalar_mult(s, p1, k, p2):
    """[s]p1 + [k]p2 with one chain of doublings."""
    both = _add(p1, p2)
    q = _IDENTITY
    for i in range(255, -1, -1):
        q = _double(q)
        bits = (s >> i & 1) | (k >> i & 1) << 1
        if bits == 1:
            q = _add(q, p1)
        elif bits == 2:
            q = _add(q, p2)
        elif bits == 3:
            q = _add(q, both)
        realtime.service()  # about a second in all on an ESP32: the sensors go on
    return q


def verify(public_key, message, signature):
    """True only for a valid signature; False for anything else, never an exception."""
    try:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        a = _decode(public_key)
        s = int.from_bytes(signature[32:], "little")
        if a is None or s >= L:
            return False
        r = bytes(signature[:32])
        h = sha512(r)
        h.update(public_key)
        h.update(message)
        k = int.from_bytes(h.digest(), "little") % L
        minus_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
        return _encode(_double_scalar_mult(s, B, k, minus_a)) == r
    except (TypeError, ValueError):
        return False
