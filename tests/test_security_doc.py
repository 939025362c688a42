"""docs/SECURITY.md's threat table is what `make report-security` runs: every test it
names exists, and a failing test makes its threat FAIL."""

from __future__ import annotations

import subprocess
import sys

from host_tools.paths import ROOT
from host_tools.testing import security_report


def test_every_test_the_threat_table_names_exists():
    table = security_report.threats()
    assert [t.id for t in table] == [f"T{i}" for i in range(1, len(table) + 1)]
    ids = sorted({nid for t in table for nid in t.tests})
    assert len(ids) >= 30
    assert [t.id for t in table if not t.tests] == ["T16"]  # eFuses need hardware
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          "--collect-only", "-q", *ids], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    collected = {line for line in out.stdout.splitlines() if "::" in line}
    collected |= {nid.split("[", 1)[0] for nid in collected}  # a parametrised test by name
    assert set(ids) <= collected, set(ids) - collected


def test_a_failed_or_missing_test_fails_its_threat(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_a" name="test_ok"><properties>'
        '<property name="inputs_tried" value="7"/></properties></testcase>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_both[sqlite]"/>'
        '<testcase classname="tests.test_a" name="test_both[postgresql]">'
        '<failure message="x"/></testcase>'
        '</testsuite></testsuites>')
    results, counts = security_report.read_junit(junit)
    ok = security_report.Threat("T1", "a", ["tests/test_a.py::test_ok"])
    bad = security_report.Threat("T2", "b",
                                 ["tests/test_a.py::test_ok", "tests/test_a.py::test_bad"])
    gone = security_report.Threat("T3", "c", ["tests/test_a.py::test_gone"])
    for t in (ok, bad, gone):
        t.results = {nid: results.get(nid, "not run") for nid in t.tests}
        for nid in t.tests:
            t.counts.update(counts.get(nid, {}))
    assert [t.verdict for t in (ok, bad, gone)] == ["PASS", "FAIL", "FAIL"]
    assert results["tests/test_a.py::test_both"] == "failed"  # one engine's case failed
    text = security_report.render([ok, bad, gone])
    assert "| T1 | a | 1/1 | PASS | 7 | - | - |" in text
    assert "T2: tests/test_a.py::test_bad failed" in text
