"""The host tools' layout shows whom each part serves (docs/ARCHITECTURE.md), and
their imports say the same: no cycles, and no part leans on one above it."""

from __future__ import annotations

import ast
from pathlib import Path

from host_tools.paths import ROOT

PACKAGE = ROOT / "host_tools"
# Who may import whom: a part uses the ones below it, never one above it. The
# fleet server stands alone; updates are published through it; a device is
# provisioned with the fleet's identity and update trust; testing drives all
# three; the simulator uses everything; the command line sits on top.
LAYERS = {"paths": 0, "processes": 0, "fleet": 1, "updates": 2, "device": 3, "testing": 4,
          "sim": 5, "cli": 6}


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p
            for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}


def imports(path: Path, known: set[str]) -> set[str]:
    """host_tools modules `path` imports, at any depth (a function-local import too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("host_tools"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known} or ({node.module} & known)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found


def part(module: str) -> str:
    return module.split(".")[1]


def test_no_import_cycles_among_the_host_tools() -> None:
    graph = {m: imports(p, set(modules())) - {m} for m, p in modules().items()}
    state: dict[str, str] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_each_part_imports_only_the_parts_below_it() -> None:
    mods = modules()
    assert {part(m) for m in mods} <= set(LAYERS), "a module outside the known parts"
    upward = [f"{m} imports {n}" for m, p in mods.items() for n in imports(p, set(mods))
              if part(n) != part(m) and LAYERS[part(n)] >= LAYERS[part(m)]]
    assert upward == []
