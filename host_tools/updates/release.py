"""Publishing a signed image to the fleet over the broker (TLS, the release identity).

Retained on updates/<board>/: the image in chunks at <digest16>/<n>, then the
announcement (JSON: version, kind, size, chunk, digest) that devices of that
board class read. Devices fetch the chunks themselves and verify the image;
the announcement only tells them what to fetch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import paho.mqtt.client as mqtt

from host_tools.fleet.broker import RELEASE_ID
from host_tools.fleet.mqtt import start_client, tls_client
from host_tools.fleet.server import Server
from host_tools.paths import ToolError, check_board
from host_tools.updates.images import KINDS, image_digest

CHUNK = 4096
KIND_TLV = 0xA0


def describe(path: Path, chunk: int = CHUNK) -> dict[str, object]:
    """Version, kind, size and signed digest of an MCUboot image file."""
    data = path.read_bytes()
    digest = image_digest(path)  # imgtool checks the layout and the hash
    _, _, hdr, prot, size = struct.unpack_from("<IIHHI", data, 0)
    major, minor, rev, build = struct.unpack_from("<BBHI", data, 20)
    pos, end = hdr + size + 4, hdr + size + prot
    kind = None
    while pos + 4 <= end:
        tlv, length = struct.unpack_from("<HH", data, pos)
        if tlv == KIND_TLV and length == 1:
            kind = data[pos + 4]
        pos += 4 + length
    names = {v: k for k, v in KINDS.items()}
    if kind not in names:
        raise ToolError(f"{path}: no payload kind TLV (sign it with `wearsafe sign`)")
    return {"version": f"{major}.{minor}.{rev}+{build}", "kind": names[kind],
            "size": len(data), "chunk": chunk, "digest": digest.hex()}


def publish_image(server: Server, port: int, path: Path, board: str,
                  host: str = "localhost", progress=None,  # type: ignore[no-untyped-def]
                  chunk: int = CHUNK) -> dict[str, object]:
    check_board(board)
    announcement = describe(path, chunk)
    data = path.read_bytes()
    base = f"updates/{board}/"
    prefix = f"{base}{str(announcement['digest'])[:16]}/"
    client = tls_client(server, server.identity(RELEASE_ID))
    start_client(client, host, port, "publish-image")
    try:
        for n, at in enumerate(range(0, len(data), chunk)):
            _sent(client.publish(prefix + str(n), data[at:at + chunk], qos=1, retain=True))
            if progress:
                progress(min(at + chunk, len(data)), len(data))
        _sent(client.publish(base + "announce", json.dumps(announcement), qos=1, retain=True))
    finally:
        client.disconnect()
        client.loop_stop()
    return announcement


def _sent(info: mqtt.MQTTMessageInfo) -> None:
    info.wait_for_publish(30)
    if not info.is_published():
        raise ToolError("the broker did not acknowledge the image: is this the release "
                        "identity's broker, and is it up?")
