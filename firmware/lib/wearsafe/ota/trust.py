# The update trust file, certs/update-trust.json, written at provisioning
# (host_tools/updates/images.py trust_document), read once at boot by install.load_trust,
# which unloads this module afterwards:
#   {"class": board class, "class_id": 32 hex digits (the MCUboot class UUID),
#    "keys": [SubjectPublicKeyInfo DER of an Ed25519 key, hex, ...],
#    "revoked": [SHA-256 of an SPKI (its MCUboot KEYHASH), 64 hex digits, ...]}
# A revoked key is refused even when "keys" lists it (image.Verifier also refuses
# an image whose KEYHASH is revoked). A key that is not a usable Ed25519 public
# key makes the whole file refused: better no updates than a key anyone can use.
import hashlib
import json

from wearsafe.ota.install import UpdateError

# SubjectPublicKeyInfo DER of an Ed25519 key (RFC 8410) up to its 32 raw bytes
ED25519_SPKI_PREFIX = b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00"


# The 8 points of small order ([8]P = identity: orders 1, 2, 4, 4, 8, 8, 8, 8), each
# in its one canonical encoding; the torsion subgroup has exactly these 8 elements,
# and any other encoding of them is refused as not canonical before this list is
# looked at. tests/target/test_ota_trust.py checks them with wearsafe.crypto.ed25519.
SMALL_ORDER = (
    b"\x01" + bytes(31),
    b"\xec" + b"\xff" * 30 + b"\x7f",
    bytes(32),
    bytes(31) + b"\x80",
    b"\xc7\x17\x6a\x70\x3d\x4d\xd8\x4f\xba\x3c\x0b\x76\x0d\x10\x67\x0f"
    b"\x2a\x20\x53\xfa\x2c\x39\xcc\xc6\x4e\xc7\xfd\x77\x92\xac\x03\x7a",
    b"\xc7\x17\x6a\x70\x3d\x4d\xd8\x4f\xba\x3c\x0b\x76\x0d\x10\x67\x0f"
    b"\x2a\x20\x53\xfa\x2c\x39\xcc\xc6\x4e\xc7\xfd\x77\x92\xac\x03\xfa",
    b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"
    b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x05",
    b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"
    b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x85",
)


def key_problem(raw):
    """Why a raw Ed25519 public key cannot be a trust anchor, or None when it can.

    Refused: an encoding that does not decode to a curve point as RFC 8032 5.1.3
    decodes (y >= p, no square root, x = 0 with the sign bit set): no signature
    would verify; and the points of small order, which are worse: with R one of
    them and S = 0, encode([S]B - [k]A) == R holds for about one digest in 8
    whatever k is, so anyone could sign for such a key. RFC 8032 keys are never
    either. (The same decoding as wearsafe.crypto.ed25519, which is not imported
    here: loaded at boot, it would stay in the heap for the whole run.)
    """
    p = (1 << 255) - 19
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if len(raw) != 32 or y >= p:
        return "does not decode to a curve point (not canonical)"
    d = -121665 * pow(121666, p - 2, p) % p
    xx = (y * y - 1) * pow(d * y * y + 1, p - 2, p) % p  # x^2 = (y^2 - 1) / (d y^2 + 1)
    if xx == 0 and sign or xx and pow(xx, (p - 1) // 2, p) != 1:
        return "does not decode to a curve point"
    if raw in SMALL_ORDER:
        return "has small order (anyone could forge its signatures)"
    return None


def load(path):
    """The update trust anchors the device was provisioned with:
    {"class", "class_id", "keys": [SPKI DER, ...], "revoked": [SHA-256 of an SPKI, ...]}.

    The file: {"class": name, "class_id": 32 hex digits, "keys": [SPKI hex, ...],
    "revoked": [64 hex digits, ...] (optional)}. A key whose SHA-256 (its MCUboot
    KEYHASH) is revoked is refused even if listed; a key that is not a usable
    Ed25519 public key (key_problem) makes the whole file refused.
    """
    from binascii import unhexlify

    try:
        with open(path) as f:
            given = json.load(f)
        trust = {"class": given["class"], "class_id": unhexlify(given["class_id"]),
                 "keys": [unhexlify(k) for k in given["keys"]],
                 "revoked": [unhexlify(h) for h in given.get("revoked", ())]}
    except OSError:
        raise UpdateError("no %s: provision the device bundle (update trust anchors)" % path)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UpdateError("%s is not a valid update trust file" % path)
    if not isinstance(trust["class"], str) or len(trust["class_id"]) != 16 or \
            any(len(k) != 44 or k[:12] != ED25519_SPKI_PREFIX for k in trust["keys"]):
        raise UpdateError("%s: class_id must be 16 bytes and keys Ed25519 public keys "
                          "(SubjectPublicKeyInfo)" % path)
    if any(len(h) != 32 for h in trust["revoked"]):
        raise UpdateError("%s: a revoked key is the SHA-256 of its SubjectPublicKeyInfo "
                          "(64 hex digits)" % path)
    for i, spki in enumerate(trust["keys"]):
        problem = key_problem(spki[12:])
        if problem:
            raise UpdateError("%s: update key %d (%s...) %s: not a trust anchor"
                              % (path, i, spki[12:20].hex(), problem))
    keys = []
    for spki in trust["keys"]:
        if hashlib.sha256(spki).digest() not in trust["revoked"]:
            keys.append(spki)
    if not keys:
        raise UpdateError("%s: every update key is revoked (or none is listed): provision "
                          "a trust file with a current key" % path)
    trust["keys"] = keys
    return trust


