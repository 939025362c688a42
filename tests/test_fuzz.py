"""Fuzzing, the fixed-seed slice: every decoder facing the network takes generated
input and raises only its documented errors, never hangs. `make fuzz` runs 100,000
inputs per target (host_tools/testing/fuzz.py)."""

from __future__ import annotations

import pytest

from host_tools.testing import fuzz

SEED = 20261125


@pytest.fixture(autouse=True)
def _built(sim_build):  # the device targets run the sim build on the unix port
    return sim_build


def check(report: fuzz.Report, count: int, record_property, least_outcomes: int) -> None:
    record_property("inputs_tried", report.inputs)
    assert report.clean, "\n".join(report.crashes[:10] + report.hangs[:10])
    assert report.inputs == count
    # the inputs reached deep: many different verdicts, some inputs accepted
    assert len(report.outcomes) >= least_outcomes, report.line()


def test_the_ota_verifier_survives_generated_images(record_property):
    report = fuzz.run("ota", 3000, SEED)
    check(report, 3000, record_property, 8)
    assert report.outcomes["BadSignature"] and report.outcomes["DigestMismatch"]


def test_the_device_cbor_and_cose_decoders_survive_generated_input(record_property):
    cbor = fuzz.run("cbor", 5000, SEED)
    cose = fuzz.run("cose", 5000, SEED)
    check(cbor, 5000, lambda *a: None, 2)
    check(cose, 5000, lambda *a: None, 3)
    assert cose.outcomes["AuthError"] and cose.outcomes["accepted"]  # a mutation in the
    record_property("inputs_tried", cbor.inputs + cose.inputs)       # payload, or none


def test_the_ingest_survives_generated_messages(record_property):
    report = fuzz.run("ingest", 5000, SEED)
    check(report, 5000, record_property, 2)
    assert report.outcomes["rejected"] > 4000


def test_the_device_mqtt_reader_survives_a_hostile_broker(record_property):
    frames = fuzz.run("mqtt", 5000, SEED)
    over_tls = fuzz.run("mqtt_tls", 40, SEED)
    check(frames, 5000, lambda *a: None, 2)
    check(over_tls, 40, lambda *a: None, 2)
    assert over_tls.outcomes["refused"] and over_tls.outcomes["dropped"]
    record_property("inputs_tried", frames.inputs + over_tls.inputs)


def test_the_harness_reports_a_planted_crash_and_hang_and_keeps_them(tmp_path):
    report = fuzz.run("canary", 60, SEED, corpus_root=tmp_path, hang_s=0.5)
    assert report.inputs == 60
    assert any("TypeError: a planted crash" in c for c in report.crashes), report.line()
    assert report.hangs, report.line()
    kept = sorted(p.name for p in (tmp_path / "canary").iterdir())
    assert any(name.startswith("crash-") for name in kept)
    replayed = fuzz.run("canary", 0, SEED, corpus_root=tmp_path, hang_s=0.5)  # the corpus again
    assert replayed.inputs == len(kept) and not replayed.clean
