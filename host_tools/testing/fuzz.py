"""Fuzzing the decoders that face the network: generated inputs, fixed seeds.

Targets (each must raise only its documented errors, and never hang):
    ota     the device's streaming MCUboot verifier       (unix port)
    cbor    the device's CBOR decoder                      (unix port)
    cose    the device's COSE_Encrypt0 opener               (unix port)
    mqtt    the device's MQTT reader, facing a hostile broker's bytes (unix port)
    mqtt_tls  the device's whole link over real TLS, against a hostile broker on
            the host: each input is one connection's CONNACK and what follows
    ingest  the ingest's message check (CBOR, COSE, SenML)  (CPython)

Inputs are mutations of valid seeds (bit flips, byte swaps, interesting
values, lengths cut or stretched, splices) and some random bytes, from a
seeded generator: the same seed gives the same inputs. Device targets get
them in batches through tests/fuzz/fuzz_device.py on the unix port.

A corpus directory keeps, per target, every input that found a new outcome
(a new error type or message shape) and every crash; the next run replays
it first. `make fuzz` runs 100,000 inputs per target with the corpus in
fuzz-corpus/; `make test` runs a short slice with a fixed seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import selectors
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.paths import ROOT, ToolError, micropython

DEVICE = "f0220000f0220000"  # a pseudonym as provision makes them (16 hex digits)
TARGETS = ("ota", "cbor", "cose", "mqtt", "mqtt_tls", "ingest")
HARNESS = ROOT / "tests" / "fuzz" / "fuzz_device.py"
BATCH = 5000
CONNACK = b"\x20\x02\x00\x00"
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0xC0, 0xD0, 0x30]


@dataclass
class Report:
    target: str
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)  # "input N: what"
    hangs: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.crashes and not self.hangs

    def line(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.target}: {self.inputs} inputs, {len(self.crashes)} crashes, "
                f"{len(self.hangs)} hangs ({counts})")


def mutate(rng: random.Random, seed: bytes, others: list[bytes]) -> bytes:
    """One mutation of `seed`, or random bytes now and then."""
    if not seed or rng.random() < 0.05:
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        how = rng.randrange(9)
        at = rng.randrange(len(data)) if data else 0
        if not data:
            data += rng.randbytes(rng.randrange(1, 16))
        elif how == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 1:
            data[at] = rng.choice(INTERESTING)
        elif how == 2:
            data[at] = rng.randrange(256)
        elif how == 3:  # a length or counter field set to a boundary
            width = rng.choice((2, 4))
            value = rng.choice((0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(data)))
            data[at:at + width] = (value & (256 ** width - 1)).to_bytes(width,
                                                                         rng.choice(("big",
                                                                                     "little")))
        elif how == 4:
            del data[at:at + rng.randrange(1, 32)]
        elif how == 5:
            data[at:at] = rng.randbytes(rng.randrange(1, 32))
        elif how == 6:
            del data[rng.randrange(len(data) + 1):]  # truncated
        elif how == 7:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            data = data[:at] + bytearray(other[cut:])
        else:
            data[at:at] = data[at:at + rng.randrange(1, 64)]  # a repeat
    return bytes(data)


def generate(seeds: list[bytes], count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate(rng, rng.choice(seeds), seeds)


def outcome_shape(text: str) -> str:
    """An outcome with its numbers taken out: 'BadTlv: TLV area declares N bytes'."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", text)[:80]


class Corpus:
    def __init__(self, root: Path | None, target: str) -> None:
        self.dir = root / target if root else None
        self.seen: set[str] = set()

    def replay(self) -> list[bytes]:
        if not self.dir or not self.dir.is_dir():
            return []
        return [p.read_bytes() for p in sorted(self.dir.iterdir()) if p.is_file()]

    def keep(self, data: bytes, outcome: str, crash: bool = False) -> None:
        shape = outcome_shape(outcome)
        if self.dir is None or (shape in self.seen and not crash):
            return
        self.seen.add(shape)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = ("crash-" if crash else "") + hashlib.sha256(data).hexdigest()[:16]
        (self.dir / name).write_bytes(data)


# -- seeds: valid inputs of each kind, made with the real tools -------------

@dataclass
class Fixture:
    """What a target needs besides its inputs: seeds, harness arguments, a checker."""

    seeds: list[bytes]
    args: list[str] = field(default_factory=list)
    check: Callable[[bytes], str] | None = None  # CPython targets


def _senml_pack() -> bytes:
    import cbor2

    return cbor2.dumps([{-2: "urn:dev:ow:0a1b2c3d:", -3: 1.8e9, 0: "heart-rate", 1: "beat/min",
                         2: 62}, {0: "spo2", 1: "/", 2: 0.97, 6: 1}, {0: "body-temp", 2: 36.6},
                        {0: "steps", 2: 12, 6: 2}])


def _cbor_seeds() -> list[bytes]:
    import cbor2

    samples = [0, 23, 24, 255, 65536, 2 ** 32, 2 ** 64 - 1, -1, -(2 ** 64), 1.5, 1e300,
               float("inf"), b"\x01\x02", "ü", [1, [2, 3]], {"a": 1, 1: [b"x"]},
               cbor2.CBORTag(16, [b"\xa1\x01\x18\x1f", {4: b"k", 6: b"\x01"}, b"ct"]), None,
               True]
    out = [cbor2.dumps(s) for s in samples] + [_senml_pack()]
    out += [b"\x9f\x01\x02\xff", b"\x5f\x41\x01\xff", b"\xbf\x61a\x01\xff", b"\xf9\x3c\x00"]
    return out


def _sealed(key: bytes, base_iv: bytes, kid: bytes, device: str) -> list[bytes]:
    """COSE_Encrypt0 messages as a device seals them (RFC 9052, AES-CCM-16-128-256)."""
    import cbor2
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    from host_tools.fleet.payloads import (
        ALG_AES_CCM_16_128_256,
        TAG_LEN,
        enc_structure,
        external_aad,
        nonce,
    )

    protected = cbor2.dumps({1: ALG_AES_CCM_16_128_256})
    aad = enc_structure(protected, external_aad(device, f"devices/{device}/up"))
    out = []
    for piv, payload in ((1, _senml_pack()), (300, b""), (2 ** 40, b"x" * 70)):
        piv_bytes = piv.to_bytes((piv.bit_length() + 7) // 8, "big")
        ct = AESCCM(key, tag_length=TAG_LEN).encrypt(nonce(base_iv, piv_bytes), payload, aad)
        out.append(cbor2.dumps(cbor2.CBORTag(16, [protected, {4: kid, 6: piv_bytes}, ct])))
    return out


def _ota_fixture(workdir: Path) -> Fixture:
    from host_tools.updates.images import keygen, public_spki, sign, trust_document

    key = keygen(workdir / "fuzz-key.pem")
    payload = workdir / "payload.tar"
    payload.write_bytes(bytes(range(256)) * 2)
    image = sign(payload, workdir / "seed.img", key, "1.2.3", 5, "sim", "app")
    trust = workdir / "update-trust.json"
    trust.write_text(trust_document("sim", [public_spki(key)]))
    return Fixture([image.read_bytes()], [str(trust)])


def _publish(topic: bytes, payload: bytes, flags: int = 0) -> bytes:
    """An MQTT PUBLISH as a broker sends it (payload short enough for a 1-byte length)."""
    return bytes([0x30 | flags, 2 + len(topic) + len(payload), 0, len(topic)]) + topic + payload


def _mqtt_seeds() -> list[bytes]:
    """What a broker sends the link, as umqtt.simple reads it after the CONNACK."""
    publish = _publish(b"updates/sim/announce",
                       b'{"version": "2.0.0", "kind": "app", "size": 512, "chunk": 256}', 1)
    chunk = _publish(b"updates/sim/x/0", b"8 bytes!")
    puback, suback, unsuback = b"\x40\x02\x00\x01", b"\x90\x03\x00\x02\x00", b"\xb0\x02\x00\x03"
    pingresp = b"\xd0\x00"
    return [publish + puback + suback + chunk + unsuback + pingresp,
            puback, publish, pingresp * 3, suback + chunk + unsuback,
            _publish(b"updates/sim/announce", b"\x00\x07data", flags=2),  # QoS 1, a pid
            b"\x30\xff\xff\xff\x7f\x00\x04abcd"]


class HostileBroker:
    """A TLS server with the broker's certificate that answers each connection with
    the next generated frames (a CONNACK, or what a mutation made of it, and what
    follows), then hangs up."""

    def __init__(self, ca_dir: Path, frames: list[bytes]) -> None:
        import socket
        import ssl
        import threading

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(ca_dir / "localhost.crt", ca_dir / "localhost.key")
        self.context.load_verify_locations(ca_dir / "ca.crt")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.frames = frames
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        served = 0
        while served < len(self.frames) and not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            served += 1
            try:
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    _read_packet(tls)  # CONNECT
                    tls.sendall(self.frames[served - 1])
                    tls.settimeout(0.3)  # take what the device sends, then hang up
                    while tls.recv(4096):
                        pass
            except OSError:
                pass  # the device hung up: its verdict is what counts
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


def _read_packet(sock: object) -> bytes:
    read = sock.recv  # type: ignore[attr-defined]
    head = read(1)
    length, shift = 0, 0
    while True:
        byte = read(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += read(length - len(body))
    return head + body


def _tls_fixture(workdir: Path) -> tuple[Path, Path]:
    """(the fleet CA's directory, a device's certs directory) for mqtt_tls."""
    from host_tools.fleet.pki import der, write_private
    from host_tools.fleet.server import Server

    ca = Server(workdir / "server").init().ca
    ca.issue("localhost", server=True)
    key_path, cert_path = ca.issue(DEVICE)
    certs = workdir / "certs"
    certs.mkdir()
    (certs / "ca.der").write_bytes(der(ca.cert_path))
    (certs / "device.der").write_bytes(der(cert_path))
    write_private(certs / "device.key.der", der(key_path))
    return ca.directory, certs


def _mqtt_session_seeds() -> list[bytes]:
    """A broker's side of a good session with the link: CONNACK, SUBACK of the
    announcement (pid 1), the retained announcement, PUBACK (pid 2), then a fetch:
    SUBACK (3), the chunk, UNSUBACK (4); and a PINGRESP."""
    announce = _publish(b"updates/sim/announce", b'{"version": "2.0.0"}', flags=1)
    chunk = _publish(b"updates/sim/x/0", b"8 bytes!")
    session = (CONNACK + b"\x90\x03\x00\x01\x00" + announce + b"\x40\x02\x00\x02"
               + b"\x90\x03\x00\x03\x00" + chunk + b"\xb0\x02\x00\x04" + b"\xd0\x00")
    return [session, session[:30], CONNACK + b"\x90\x03\x00\x01\x80",
            CONNACK + b"\x90\x03\x00\x01\x00" + b"\x40\x02\x00\x02" * 3]


def fixture(target: str, workdir: Path) -> Fixture:
    if target == "ota":
        return _ota_fixture(workdir)
    if target == "cbor":
        return Fixture(_cbor_seeds())
    if target == "mqtt":
        return Fixture(_mqtt_seeds())
    if target == "mqtt_tls":  # whole sessions from the CONNACK on: mutations reach it too
        return Fixture(_mqtt_session_seeds())
    key, base_iv, kid = secrets.token_bytes(32), secrets.token_bytes(13), b"\x01\x02"
    sealed = _sealed(key, base_iv, kid, DEVICE)
    if target == "cose":
        from host_tools.fleet.payloads import external_aad

        aad = external_aad(DEVICE, f"devices/{DEVICE}/up")
        return Fixture(sealed + _cbor_seeds(), [key.hex(), base_iv.hex(), aad.hex()])
    if target == "ingest":
        return Fixture(sealed + _cbor_seeds(), check=_ingest_checker(workdir, key, base_iv, kid))
    if target == "canary":  # the harness's own check: a planted crash and hang
        return Fixture([b"\xde\xad", b"\xbe\xef", b"fine"])
    raise ToolError(f"unknown fuzz target {target!r}: choose one of {', '.join(TARGETS)}")


def _ingest_checker(workdir: Path, key: bytes, base_iv: bytes, kid: bytes
                    ) -> Callable[[bytes], str]:
    import io

    from host_tools.fleet.ingest import Ingest
    from host_tools.fleet.payloads import DeviceKey
    from host_tools.fleet.server import Server

    server = Server(workdir / "server").init()
    server.register(DEVICE, DeviceKey(kid, key, base_iv))
    ingest = Ingest(server, log=io.StringIO())

    def check(data: bytes) -> str:
        ingest.log = io.StringIO()  # a run of 100,000 would fill memory with verdicts
        return ingest.accept(f"devices/{DEVICE}/up", data).split(":")[0]
    return check


# -- running -------------------------------------------------------------------

def run(target: str, count: int, seed: int, corpus_root: Path | None = None,
        progress: Callable[[int], None] | None = None, hang_s: float = 30.0) -> Report:
    report = Report(target)
    corpus = Corpus(corpus_root, target)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        work = Path(tmp)
        fix = fixture(target, work)
        inputs = corpus.replay() + list(generate(fix.seeds, count, seed))
        broker = None
        if target == "mqtt_tls":
            ca_dir, certs = _tls_fixture(work)
            broker = HostileBroker(ca_dir, inputs)
            fix.args = [str(certs), str(broker.port)]
        try:
            _run_batches(target, fix, inputs, report, corpus, work, progress, hang_s)
        finally:
            if broker:
                broker.close()
    return report


def _run_batches(target: str, fix: Fixture, inputs: list[bytes], report: Report,
                 corpus: Corpus, work: Path, progress: Callable[[int], None] | None,
                 hang_s: float) -> None:
    for start in range(0, len(inputs), BATCH):
        batch = inputs[start:start + BATCH]
        if fix.check:
            _run_host(fix.check, batch, start, report, corpus)
        else:
            _run_device(target, fix.args, batch, start, report, corpus, work, hang_s)
        if progress:
            progress(min(start + BATCH, len(inputs)))


def _run_host(check: Callable[[bytes], str], batch: list[bytes], start: int, report: Report,
              corpus: Corpus) -> None:
    for i, data in enumerate(batch, start + 1):
        report.inputs += 1
        try:
            outcome = check(data)
        except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
            report.crashes.append(f"input {i}: {type(e).__name__}: {e}")
            report.outcomes["crash"] += 1
            corpus.keep(data, repr(e), crash=True)
            continue
        report.outcomes[outcome] += 1
        corpus.keep(data, outcome)


def _run_device(target: str, args: list[str], batch: list[bytes], start: int, report: Report,
                corpus: Corpus, work: Path, hang_s: float, heap: str = "256K") -> None:
    """The batch on the unix port, one process; after a hang, a new one from the
    input after it. A hang: no line for `hang_s` seconds."""
    env = {"MICROPYPATH": f"{ROOT / 'build' / 'sim' / 'fs' / 'lib'}:.frozen"}
    while batch:
        path = work / "inputs.bin"
        path.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in batch))
        process = subprocess.Popen([micropython(), "-X", f"heapsize={heap}", str(HARNESS),
                                    target, str(path), *args], cwd=work, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        last, finished = _follow(process, batch, start, report, corpus, hang_s)
        if finished:
            return
        if last == 0 and process.returncode != -9:
            err = process.stderr.read() if process.stderr else ""
            raise ToolError(f"the fuzz harness did not start ({target}): {err.strip()[-500:]}")
        report.inputs += 1
        report.outcomes["hang"] += 1
        report.hangs.append(f"input {start + last + 1}: no result (hang or fatal error)")
        corpus.keep(batch[last], "hang", crash=True)
        batch, start = batch[last + 1:], start + last + 1


def _follow(process: subprocess.Popen[str], batch: list[bytes], start: int, report: Report,
            corpus: Corpus, hang_s: float) -> tuple[int, bool]:
    """Take in the harness's lines: (inputs done, whether it finished)."""
    assert process.stdout is not None
    last, finished = 0, False
    with selectors.DefaultSelector() as watch:
        watch.register(process.stdout, selectors.EVENT_READ)
        while True:
            if not watch.select(timeout=hang_s):
                process.kill()
                break
            line = process.stdout.readline()
            if not line:
                break
            words = line.split(" ", 2)
            if words[0] == "done":
                finished = True
                continue
            last = int(words[0])
            report.inputs += 1
            report.outcomes[words[1].strip()] += 1
            if words[1] == "crash":
                report.crashes.append(f"input {start + last}: {words[2].strip()}")
                corpus.keep(batch[last - 1], words[2], crash=True)
            else:
                corpus.keep(batch[last - 1], words[1])
    process.wait()
    return last, finished and process.returncode == 0


def write_summary(reports: list[Report], path: Path) -> None:
    path.write_text(json.dumps({r.target: {"inputs": r.inputs, "crashes": r.crashes,
                                           "hangs": r.hangs, "outcomes": dict(r.outcomes)}
                                for r in reports}, indent=1) + "\n")
