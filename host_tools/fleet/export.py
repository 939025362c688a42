"""A device's stored readings, opened with its key, as CSV or FHIR R4 (audited)."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from host_tools.fleet.payloads import PayloadOpener
from host_tools.fleet.server import Server
from host_tools.paths import ToolError

LOINC = {  # SenML quantity -> (LOINC code, display, UCUM unit)
    "heart-rate": ("8867-4", "Heart rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    "body-temp": ("8310-5", "Body temperature", "Cel"),
    "steps": ("55423-8", "Number of steps in unspecified time Pedometer", "{steps}"),
}


def readings(server: Server, device_id: str) -> list[dict[str, Any]]:
    """Every stored reading of a device, opened with its key."""
    opener = PayloadOpener({(key := server.device_key(device_id)).key_id: key}, in_order=False)
    topic = f"devices/{device_id}/up"
    out = []
    for _, sealed in server.stored(device_id):
        for record in opener.open_senml(sealed, device_id, topic):
            quantity = record["n"].rsplit("/", 1)[-1]
            out.append({"time": record["t"], "quantity": quantity, "value": record["v"],
                        "unit": record["u"]})
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["time", "quantity", "value", "unit"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"]))
        writer.writerow(dict(row, time=iso))
    return buf.getvalue()


def to_fhir(device_id: str, rows: list[dict[str, Any]]) -> str:
    """A FHIR R4 collection Bundle of vital-signs Observations."""
    entries = []
    for row in rows:
        if row["quantity"] not in LOINC:
            continue
        code, display, unit = LOINC[row["quantity"]]
        value = row["value"] * 100 if row["quantity"] == "spo2" else row["value"]
        entries.append({"resource": {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs" if row["quantity"] != "steps" else "activity"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code,
                                 "display": display}]},
            "device": {"identifier": {"system": "urn:wearsafe:device", "value": device_id}},
            "effectiveDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["time"])),
            "valueQuantity": {"value": round(value, 2), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}}})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries},
                      indent=1)


def export(server: Server, device_id: str, fmt: str) -> str:
    if fmt not in ("csv", "fhir"):
        raise ToolError(f"unknown export format {fmt!r}: choose csv or fhir")
    rows = readings(server, device_id)
    server.audit("export", device_id, readings=len(rows))
    return to_csv(rows) if fmt == "csv" else to_fhir(device_id, rows)
