# The boot selector: which application runs, chosen before any of it is
# imported. It stays in the factory image (OTA app bundles never replace
# it) and follows ESP-IDF's bootloader rules for OTA partitions:
#
#   set_boot(slot)  the slot is "new"
#   boot()          a "new" slot runs on trial ("pending"); a slot still
#                   "pending" at boot (its trial ended without confirm())
#                   is abandoned: the previous slot runs again
#   confirm()       the running slot is "valid"
#
# The record is one small JSON file, replaced by a rename: a power cut
# leaves the old or the new record, never a torn one. The sim board's flash
# partitions keep their selection with the same class.
import json
import os
import sys

FACTORY = "factory"
NEW = "new"
PENDING = "pending"
VALID = "valid"
APP_SLOTS = ("a", "b")
RECORD = "apps/boot.json"


def join(*parts):
    return "/".join(p.rstrip("/") for p in parts if p) or "/"


class BootRecord:
    """Slot selection with trial and rollback; `info` travels with a slot on trial."""

    def __init__(self, path):
        self.path = path
        self.data = self._load()

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except OSError:
            data = None
        except ValueError:
            print("bootsel: %s is corrupt; running the factory slot" % self.path)
            data = None
        if not isinstance(data, dict) or data.get("state") not in (NEW, PENDING, VALID):
            data = {"active": FACTORY, "previous": FACTORY, "state": VALID}
        return data

    def save(self):
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.rename(tmp, self.path)

    @property
    def active(self):
        return self.data["active"]

    @property
    def on_trial(self):
        return self.data["state"] == PENDING

    def inactive(self, slots):
        return slots[1] if self.active == slots[0] else slots[0]

    def boot(self):
        """Apply the rules at power-on; returns the slot to run."""
        state = self.data["state"]
        if state == NEW:
            self.data["state"] = PENDING
            self.save()
        elif state == PENDING:
            trial = self.data.pop("trial", None)
            self.data["rolled_back"] = trial
            self.count_rollback(trial)
            self.data["active"] = self.data["previous"]
            self.data["state"] = VALID
            self.save()
        return self.active

    def count_rollback(self, info):
        """Rollbacks of the last image rolled back: a power cut during a trial is not
        the image's fault, so it may be tried again, a few times."""
        digest = info and info.get("digest")
        if digest:
            self.data["rollbacks"] = {digest: self.rollbacks(digest) + 1}

    def rollbacks(self, digest):
        return self.data.get("rollbacks", {}).get(digest, 0)

    def set_boot(self, slot, info):
        """Run `slot` on trial at the next boot; `info` describes what it holds."""
        if self.data["state"] == VALID:
            self.data["previous"] = self.active
        self.data.update(active=slot, state=NEW, trial=info)
        self.save()

    def confirm(self):
        """Keep the running slot; returns the trial info it was confirmed with, or None.
        The info stays as "confirmed" until the caller has acted on it and take()s it."""
        if self.data["state"] != PENDING:
            return None
        info = self.data.pop("trial", None)
        self.data.update(state=VALID, confirmed=info)
        self.save()
        return info

    def take(self, key):
        """A note left for the application (e.g. "rolled_back"), removed once read."""
        value = self.data.pop(key, None)
        if value is not None:
            self.save()
        return value


def boot():
    """At power-on: the board's bootloader step, then the application slot."""
    import board

    board.boot()
    state = board.state_dir()
    try:
        os.mkdir(join(state, "apps"))
    except OSError:
        pass  # exists
    slot = BootRecord(join(state, RECORD)).boot()
    if slot != FACTORY:
        sys.path.insert(0, join(state, "apps", slot))
    return slot
