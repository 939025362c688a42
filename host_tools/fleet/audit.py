"""The audit log: one JSON line per export or forget (0600), naming the operator and
a one-way reference to the device, never its id or a reading. A Server directory's part."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path


def device_ref(device_id: str) -> str:
    """What the audit log names a device by: a one-way reference, not its id."""
    return hashlib.sha256(b"wearsafe-audit\0" + device_id.encode()).hexdigest()[:16]


class AuditLog:
    directory: Path

    def audit(self, action: str, device_id: str, **counts: int) -> None:
        entry: Mapping[str, object] = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "operator": getpass.getuser(), "action": action,
            "device_ref": device_ref(device_id), **counts}
        fd = os.open(self.directory / "audit.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(entry) + "\n")
