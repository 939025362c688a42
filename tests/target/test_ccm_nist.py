# Every NIST CAVS 11.0 AES-CCM vector (DVPT, VADT, VNT, VPT, VTT; 128, 192
# and 256-bit keys) from the cryptography-vectors package, whose folder the
# unix target passes in $WEARSAFE_VECTORS. Every 'Result = Fail' must raise.
import os
from binascii import unhexlify

from wearsafe.crypto import ccm

UNIX_ONLY = True  # reads the vector files from the host
TIMEOUT = 600


def _cases(path):
    """Yield each case as a dict of its fields, with the file's current settings."""
    fields = {}
    in_case = False
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                for item in line.strip("[]").split(","):
                    k, v = item.split("=")
                    fields[k.strip()] = v.strip()
            elif " = " in line:
                k, v = line.split(" = ")
                if k == "Count":
                    in_case = True
                fields[k] = v
            elif not line and in_case:
                yield fields
                in_case = False
                fields.pop("Result", None)
    if in_case:
        yield fields


def _bytes(fields, name, length_field):
    data = unhexlify(fields[name])
    return data[:int(fields[length_field])]


def _run(kind):
    root = os.getenv("WEARSAFE_VECTORS") + "/ciphers/AES/CCM/"
    passed = failed = 0
    for bits in (128, 192, 256):
        for case in _cases(root + "%s%d.rsp" % (kind, bits)):
            key, nonce = unhexlify(case["Key"]), unhexlify(case["Nonce"])
            tlen = int(case["Tlen"])
            aad = _bytes(case, "Adata", "Alen")
            ct = unhexlify(case["CT"])
            if case.get("Result") == "Fail":
                try:
                    ccm.decrypt(key, nonce, ct, aad, tlen)
                except ccm.AuthError:
                    failed += 1
                    continue
                raise AssertionError("%s%d count %s: forged message accepted"
                                     % (kind, bits, case["Count"]))
            pt = _bytes(case, "Payload", "Plen")
            assert ccm.encrypt(key, nonce, pt, aad, tlen) == ct, case["Count"]
            assert ccm.decrypt(key, nonce, ct, aad, tlen) == pt, case["Count"]
            passed += 1
    return passed, failed


def test_dvpt_decryption_verification():
    passed, failed = _run("DVPT")
    assert (passed, failed) == (240, 480), (passed, failed)


def test_vadt_variable_associated_data():
    assert _run("VADT") == (990, 0)


def test_vnt_variable_nonce():
    assert _run("VNT") == (210, 0)


def test_vpt_variable_payload():
    assert _run("VPT") == (750, 0)


def test_vtt_variable_tag():
    assert _run("VTT") == (210, 0)
