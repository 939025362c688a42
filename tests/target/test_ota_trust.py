# Trust anchors that cannot hurt (issue 13, finding 9): small-order and
# undecodable keys refused, revoked keys refused even when listed, on the
# device's own code (the announcements: test_ota_announcements.py).
import hashlib
import json
from binascii import hexlify, unhexlify

from wearsafe.crypto import ed25519
from wearsafe.ota import image, install
from wstest import raises

SPKI = unhexlify("302a300506032b6570032100")  # an Ed25519 SubjectPublicKeyInfo's start
# RFC 8032 section 7.1, TEST 1 and TEST 2: two well-formed public keys
KEY1 = SPKI + unhexlify("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
KEY2 = SPKI + unhexlify("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
# The 8 points of small order, canonically encoded (orders 1, 2, 4, 4, 8, 8, 8, 8)
SMALL_ORDER = [unhexlify(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85")]


def _trust_file(keys, revoked=(), name="trust.json"):
    doc = {"class": "sim", "class_id": "00" * 16, "keys": [hexlify(k).decode() for k in keys]}
    if revoked:
        doc["revoked"] = [hexlify(h).decode() for h in revoked]
    with open(name, "w") as f:
        json.dump(doc, f)
    return name


def test_small_order_and_undecodable_keys_are_refused_as_trust_anchors():
    # why: with a small-order key A, R = the identity and S = 0 verify whatever the
    # digest is signed, for the identity key; for the others about one digest in 8
    forged = SMALL_ORDER[0] + bytes(32)
    assert ed25519.verify(SMALL_ORDER[0], b"any digest at all", forged) is True
    for raw in SMALL_ORDER:
        e = raises(install.UpdateError, install.load_trust, _trust_file([KEY1, SPKI + raw]))
        assert "small order" in str(e) and "key 1" in str(e), e
    y_too_big = (ed25519.P + 1).to_bytes(32, "little")  # the identity, non-canonically
    not_on_curve = (2).to_bytes(32, "little")
    for raw in (y_too_big, not_on_curve):
        e = raises(install.UpdateError, install.load_trust, _trust_file([SPKI + raw]))
        assert "does not decode" in str(e), e
    x25519 = b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x6e\x03\x21\x00" + KEY1[12:]  # not Ed25519
    raises(install.UpdateError, install.load_trust, _trust_file([x25519]))
    trust = install.load_trust(_trust_file([KEY1, KEY2]))  # well-formed keys still load
    assert trust["keys"] == [KEY1, KEY2]


def _identity(point):
    x, y, z, _ = point
    return x % ed25519.P == 0 and (y - z) % ed25519.P == 0


def test_the_trust_check_agrees_with_the_verifiers_own_curve_arithmetic():
    from wearsafe.ota import trust as trustfile  # install.load_trust unloads it after use

    # trustfile.key_problem decodes without importing the verifier: same verdicts
    assert sorted(trustfile.SMALL_ORDER) == sorted(SMALL_ORDER) and len(set(SMALL_ORDER)) == 8
    for raw in SMALL_ORDER:  # each a point, canonically encoded, with [8]P = identity
        point = ed25519._decode(raw)
        assert point is not None and ed25519._encode(point) == raw
        for _ in range(3):
            point = ed25519._double(point)
        assert _identity(point), hexlify(raw)
    p = ed25519.P
    edges = [(v | s << 255).to_bytes(32, "little") for v in (0, 1, 2, p - 1, p, p + 1,
                                                            (1 << 255) - 1) for s in (0, 1)]
    seed = b"trust"
    for _ in range(150):
        seed = hashlib.sha256(seed).digest()
        edges.append(seed)
    decoded = 0
    for raw in edges:
        problem = trustfile.key_problem(raw)
        undecodable = ed25519._decode(raw) is None
        assert (problem is not None and "decode" in problem) == undecodable, hexlify(raw)
        decoded += not undecodable
    assert 50 < decoded < 130  # about half of all encodings are points


def test_a_revoked_update_key_is_refused_even_when_listed():
    h1 = hashlib.sha256(KEY1).digest()
    trust = install.load_trust(_trust_file([KEY1, KEY2], revoked=[h1]))
    assert trust["keys"] == [KEY2] and trust["revoked"] == [h1]
    verifier = image.Verifier(trust, install.NullSink(), 4096, 0)
    raises(image.RevokedKey, verifier._key, h1)
    assert verifier._key(hashlib.sha256(KEY2).digest()) == KEY2[12:]
    e = raises(install.UpdateError, install.load_trust, _trust_file([KEY1], revoked=[h1]))
    assert "revoked" in str(e)
    for revoked in (["00" * 31], [5], "ab" * 32):
        with open("bad.json", "w") as f:
            json.dump({"class": "sim", "class_id": "00" * 16,
                       "keys": [hexlify(KEY1).decode()], "revoked": revoked}, f)
        raises(install.UpdateError, install.load_trust, "bad.json")
