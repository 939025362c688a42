"""`make report-security`: the threat table of docs/SECURITY.md, its tests run, one
verdict per threat with the counts the tests recorded (inputs tried, faults
injected, messages lost).

The table in SECURITY.md is the one source: each row names its tests as pytest
node ids in backticks. They run in one pytest session with a JUnit XML report;
tests record their counts with pytest's `record_property`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.paths import BUILD, ROOT, ToolError

SECURITY_MD = ROOT / "docs" / "SECURITY.md"
COUNTS = ("inputs_tried", "faults_injected", "messages_lost")
ROW = re.compile(r"^\| (T\d+) \| (.+?) \| (.+?) \| (.+?) \|$")


@dataclass
class Threat:
    id: str
    threat: str
    tests: list[str]
    results: dict[str, str] = field(default_factory=dict)  # node id -> passed/failed/...
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def verdict(self) -> str:
        if not self.tests:
            return "NOT AUTOMATED"
        outcomes = [self.results.get(t, "not run") for t in self.tests]
        return "PASS" if all(o == "passed" for o in outcomes) else "FAIL"


def threats(path: Path = SECURITY_MD) -> list[Threat]:
    found = []
    for line in path.read_text().splitlines():
        match = ROW.match(line.strip())
        if match:
            found.append(Threat(match[1], match[2],
                                re.findall(r"`(tests/[^`\s]+::[^`\s]+)`", match[4])))
    if not found:
        raise ToolError(f"no threat table in {path}")
    return found


def node_id(testcase: ET.Element) -> str:
    """JUnit's classname 'tests.target.test_ccm' and name back to a pytest node id."""
    return testcase.attrib["classname"].replace(".", "/") + ".py::" + testcase.attrib["name"]


WORST_FIRST = ("failed", "skipped", "passed")


def read_junit(path: Path) -> tuple[dict[str, str], dict[str, Counter[str]]]:
    """Each test's outcome and counts by node id. A parametrised test (`name[sqlite]`,
    `name[postgresql]`) is also entered under its plain name, with its worst outcome
    and the sum of its counts: the threat table names the test, every case of it counts."""
    results: dict[str, str] = {}
    counts: dict[str, Counter[str]] = {}
    for case in ET.parse(path).iter("testcase"):
        nid = node_id(case)
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome = "skipped" if case.find("skipped") is not None else \
            "failed" if failed else "passed"
        found = Counter({p.attrib["name"]: int(p.attrib["value"])
                         for p in case.iter("property") if p.attrib["name"] in COUNTS})
        results[nid], counts[nid] = outcome, found
        if "[" in nid:
            base = nid.split("[", 1)[0]
            known = results.get(base, "passed")
            results[base] = min(known, outcome, key=WORST_FIRST.index)
            counts.setdefault(base, Counter()).update(found)
    return results, counts


def run(out_dir: Path = BUILD / "security") -> int:
    table = threats()
    ids = sorted({t for threat in table for t in threat.tests})
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = out_dir / "junit.xml"
    subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                     f"--junitxml={junit}", *ids], cwd=ROOT)
    results, counts = read_junit(junit)
    for threat in table:
        threat.results = {t: results.get(t, "not run") for t in threat.tests}
        for t in threat.tests:
            threat.counts.update(counts.get(t, Counter()))
    text = render(table)
    (out_dir / "report.md").write_text(text)
    print("\n" + text)
    print(f"(also in {out_dir / 'report.md'})")
    return 0 if all(t.verdict != "FAIL" for t in table) else 1


def render(table: list[Threat]) -> str:
    lines = ["| id | threat | tests passed | verdict | inputs tried | faults injected | "
             "messages lost |", "|---|---|---|---|---|---|---|"]
    for t in table:
        passed = sum(1 for r in t.results.values() if r == "passed")
        counts = [str(t.counts[c]) if c in t.counts else "-" for c in COUNTS]
        lines.append(f"| {t.id} | {t.threat} | {passed}/{len(t.tests)} | {t.verdict} | "
                     + " | ".join(counts) + " |")
    failing = [f"{t.id}: {nid} {r}" for t in table for nid, r in t.results.items()
               if r != "passed"]
    return "\n".join(lines + [""] + (["Not passing:"] + failing if failing else
                                     ["Every automated threat test passed."])) + "\n"
