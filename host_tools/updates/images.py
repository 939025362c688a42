"""Signed update images: MCUboot format, made and checked by `imgtool`.

An image carries, in its protected TLVs, the security counter, the board
class as an MCUboot class UUID (imgtool --vid/--cid: uuid5 of the class name
in the vendor's namespace) and the payload kind (TLV 0xa0: 1 = firmware,
2 = app bundle); imgtool adds SHA-256, KEYHASH and the Ed25519 signature of
the digest. Devices trust the keys listed in their bundle's
certs/update-trust.json, except those it revokes (by key hash).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from host_tools.fleet.pki import write_private
from host_tools.fleet.server import Server
from host_tools.paths import BUILD, ToolError, check_board, venv_tool

VENDOR = "wearsafe"
KIND_TLV = "0xa0"
KINDS = {"firmware": 1, "app": 2}
HEADER_SIZE = 32
# imgtool's -S: the slot it checks the image against (payload plus a page for the
# header and TLVs); the device checks its own. Firmware: an app slot of
# MicroPython's ESP32_GENERIC OTA variant, 0x180000 (ports/esp32/partitions-4MiB-ota.csv).
SLOT_SIZE = {"firmware": 0x180000 + 0x1000, "app": 0x80000 + 0x1000}
FACTORY_ONLY = ("bootsel.mpy", "board.mpy", "simhw")  # never replaced by an app bundle
TRUST_FILE = Path("certs") / "update-trust.json"


def class_id(board: str) -> bytes:
    """The MCUboot class UUID imgtool writes for --vid VENDOR --cid board."""
    vendor = uuid.uuid5(uuid.NAMESPACE_DNS, VENDOR)
    return uuid.uuid5(vendor, board).bytes


def keygen(path: Path) -> Path:
    """A new Ed25519 image-signing key (PEM, 0600) made by imgtool."""
    if path.exists():
        raise ToolError(f"{path} exists: refusing to overwrite a signing key")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    _imgtool("keygen", "-t", "ed25519", "-k", str(tmp))
    write_private(path, tmp.read_bytes())
    tmp.unlink()
    return path


def signing_key_for(server: Server, path: Path) -> Path:
    """The image-signing key at `path` (made on first use), trusted by `server`'s devices."""
    if not path.exists():
        keygen(path)
    server.trust_update_key(public_spki(path))
    return path


def public_spki(key_path: Path) -> bytes:
    """The signing key's public half as SubjectPublicKeyInfo DER (what KEYHASH hashes)."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise ToolError(f"{key_path}: not a readable Ed25519 private key in PEM") from e
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
# The 8 points of small order (RFC 8032 keys are never one): whoever picks R
# among them can sign about one digest in 8 for such a key without knowing anything.
SMALL_ORDER_KEYS = frozenset(bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"))


def key_hash(spki: bytes) -> str:
    """The SHA-256 of an SPKI, hex: MCUboot's KEYHASH, and how the trust file revokes."""
    return hashlib.sha256(spki).hexdigest()


def trust_document(board: str, spkis: list[bytes], revoked: Iterable[bytes] = ()) -> str:
    """certs/update-trust.json: the keys a device of `board` trusts, and the keys it
    refuses even if listed (`revoked`: SPKI DER, or 32-byte key hashes), listed by hash.

    A revoked key is left out of "keys"; the device also checks "revoked" itself, so a
    trust file that lists a key it revokes still refuses it. Keys must be Ed25519 SPKIs
    of usable keys: the device refuses the whole file otherwise (install.load_trust).
    """
    for spki in spkis:
        if len(spki) != 44 or not spki.startswith(ED25519_SPKI_PREFIX):
            raise ToolError("an update key is not an Ed25519 SubjectPublicKeyInfo (44 bytes DER)")
        if spki[12:] in SMALL_ORDER_KEYS:
            raise ToolError(f"update key {spki[12:20].hex()}... has small order: anyone could "
                            "sign for it; it cannot be a trust anchor")
    hashes = sorted({r.hex() if len(r) == 32 else key_hash(r) for r in revoked})
    keys = [k.hex() for k in spkis if key_hash(k) not in hashes]
    if not keys:
        raise ToolError("every update key is revoked: a device would take no update at all")
    document: dict[str, object] = {"class": board, "class_id": class_id(board).hex(),
                                   "keys": keys}
    if hashes:
        document["revoked"] = hashes
    return json.dumps(document, indent=1) + "\n"


def _imgtool(*args: str) -> str:
    done = subprocess.run([venv_tool("imgtool"), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise ToolError(f"imgtool {args[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def check_version(version: str) -> str:
    if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,5}(\+\d{1,10})?", version):
        raise ToolError(f"version {version!r}: use MAJOR.MINOR.REVISION[+BUILD], e.g. 1.2.0+7")
    return version if "+" in version else version + "+0"


def sign(payload: Path, out: Path, key: Path, version: str, counter: int, board: str,
         kind: str) -> Path:
    """Sign `payload` into an MCUboot image at `out`, then have imgtool verify it."""
    check_board(board)
    if kind not in KINDS:
        raise ToolError(f"unknown payload kind {kind!r}: choose {' or '.join(KINDS)}")
    if not 0 <= counter < 2**31:
        raise ToolError(f"security counter {counter} must be 0..2147483647")
    if not payload.is_file():
        raise ToolError(f"{payload}: no such payload file")
    _imgtool("sign", "-k", str(key), "--header-size", str(HEADER_SIZE), "--pad-header",
             "-S", str(SLOT_SIZE[kind]), "-v", check_version(version),
             "--security-counter", str(counter), "--vid", VENDOR, "--cid", board,
             "--custom-tlv", KIND_TLV, f"0x{KINDS[kind]:02x}", str(payload), str(out))
    _imgtool("verify", "-k", str(key), str(out))
    return out


def image_digest(path: Path) -> bytes:
    """The signed SHA-256 (TLV 0x10) of an image, read by imgtool's own parser."""
    from imgtool.image import Image  # imgtool's verify returns the digest

    status, _, digest, *_ = Image.verify(str(path), None)
    if digest is None:
        raise ToolError(f"{path}: not an MCUboot image ({status})")
    return bytes(digest)


def app_bundle(board: str, out: Path, replace: dict[str, bytes] | None = None) -> Path:
    """The application's compiled files from build/<board>/fs/lib as a ustar archive.

    `replace` maps a path inside the bundle to other contents (tests build
    a "version 2" this way from the same tree).
    """
    lib = BUILD / check_board(board) / "fs" / "lib"
    if not lib.is_dir():
        raise ToolError(f"{lib} is missing: run `wearsafe build --board {board}` first")
    replace = dict(replace or {})
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(lib.rglob("*")):
            rel = path.relative_to(lib).as_posix()
            if rel.split("/")[0] in FACTORY_ONLY:
                continue
            data = replace.pop(rel, None)
            if path.is_dir():
                tar.addfile(_entry(rel, tarfile.DIRTYPE, 0))
            else:
                data = path.read_bytes() if data is None else data
                tar.addfile(_entry(rel, tarfile.REGTYPE, len(data)), io.BytesIO(data))
        for rel, data in replace.items():
            tar.addfile(_entry(rel, tarfile.REGTYPE, len(data)), io.BytesIO(data))
    return out


def _entry(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o644 if kind == tarfile.REGTYPE else 0o755
    return info


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()
