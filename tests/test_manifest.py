"""board/esp32_devkitc/manifest.py, read the way MicroPython's manifest tool reads it:
every path it names exists and the frozen set is what the device needs, no more: the
application, the boot selector and the board module, every module they import,
and no simulator or test code (a test-only module under firmware/lib stays out)."""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

from host_tools.paths import BOARDS, FIRMWARE, ROOT

MANIFEST = BOARDS / "esp32_devkitc" / "manifest.py"
LIB = FIRMWARE / "lib"

# Device code that names a test-only module, inside a function, on a path the
# device never takes (each with a test below saying why it never does).
NEVER_TAKEN = {"wearsafe.crypto.aes192": {"wearsafe.crypto.ccm"}}


def module_name(path: Path, root: Path) -> str:
    name = str(path.relative_to(root).with_suffix("")).replace("/", ".")
    return name.removesuffix(".__init__")


def read_manifest() -> tuple[dict[str, Path], list[str], dict[str, object]]:
    """({frozen module: its source}, manifests included, the manifest's globals), as
    tools/manifestfile.py of MicroPython 1.29 reads it: with the manifest's folder
    as the working directory, paths relative to it."""
    modules: dict[str, Path] = {}
    included: list[str] = []
    here = MANIFEST.parent

    def add(root: Path, file: Path) -> None:
        assert file.is_file(), f"{file}: no such file"
        name = module_name(file, root)
        assert name not in modules, f"{name} frozen twice"
        modules[name] = file

    def freeze(path: str, script: object = None, opt: int | None = None) -> None:
        root = (here / path).resolve()
        assert root.is_dir(), f"freeze({path!r}): no such directory"
        if script is None:
            files = sorted(root.rglob("*.py"))
        elif isinstance(script, str):
            files = sorted((root / script).rglob("*.py")) if (root / script).is_dir() \
                else [root / script]
        else:
            files = [root / str(s) for s in script]  # type: ignore[attr-defined]
        for file in files:
            add(root, file)

    def package(package_path: str, files: list[str] | None = None, base_path: str = ".",
                opt: int | None = None) -> None:
        root = (here / base_path).resolve()
        chosen = [root / package_path / f for f in files] if files is not None \
            else sorted((root / package_path).rglob("*.py"))
        for file in chosen:
            add(root, file)

    def module(name: str, base_path: str = ".", opt: int | None = None) -> None:
        root = (here / base_path).resolve()
        add(root, root / name)

    def include(manifest: str, **kwargs: object) -> None:
        included.append(manifest)

    scope: dict[str, object] = {"freeze": freeze, "package": package, "module": module,
                                "include": include}
    with contextlib.chdir(here):
        exec(compile(MANIFEST.read_text(), str(MANIFEST), "exec"), scope)
    return modules, included, scope


def declared_test_only() -> set[str]:
    _, _, scope = read_manifest()
    return {module_name(LIB / path, LIB) for path in scope["TEST_ONLY"]}  # type: ignore[attr-defined]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, imported inside a function) for every import in a source file; for
    `from a.b import c` both a.b and a.b.c (c may be a module)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            found.extend((".".join(parts[:i]), lazy) for i in range(1, len(parts) + 1))
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def device_needs() -> set[str]:
    """Modules of firmware/lib and the board module that the device imports, from
    boot.py and main.py on (imports inside functions too), but for NEVER_TAKEN."""
    sources = {module_name(p, LIB): p for p in LIB.rglob("*.py")}
    sources["board"] = BOARDS / "esp32_devkitc" / "board.py"
    needed: set[str] = set()
    todo = [("boot", FIRMWARE / "boot.py"), ("main", FIRMWARE / "main.py")]
    while todo:
        importer, path = todo.pop()
        for name, _ in imports(path):
            if name in sources and name not in needed \
                    and importer not in NEVER_TAKEN.get(name, ()):
                needed.add(name)
                todo.append((name, sources[name]))
    return needed


def test_the_manifest_freezes_the_app_the_boot_selector_and_the_board():
    modules, included, _ = read_manifest()
    assert included == ["$(PORT_DIR)/boards/manifest.py"]  # the port's own, umqtt included
    expected = {module_name(p, LIB) for p in LIB.rglob("*.py")} - declared_test_only()
    assert expected <= set(modules) and {"wearsafe.app", "bootsel", "board"} <= set(modules)
    assert not [m for m in modules if m.startswith(("simhw", "tests", "wstest", "h32"))]
    assert modules["board"] == BOARDS / "esp32_devkitc" / "board.py"


def test_every_module_the_device_imports_is_frozen_and_nothing_else():
    modules, _, _ = read_manifest()
    needed = device_needs()
    assert {"wearsafe.app", "wearsafe.link", "wearsafe.ota.updater", "bootsel"} <= needed
    assert sorted(needed - set(modules)) == [], "imported by the device, not frozen"
    assert sorted(set(modules) - needed) == [], "frozen, but the device never imports it"


def test_a_test_only_module_is_not_frozen_and_only_tests_need_it():
    modules, _, _ = read_manifest()
    only = declared_test_only()
    assert "wearsafe.crypto.aes192" in only
    target_imports = {name for test in (ROOT / "tests" / "target").glob("*.py")
                      for name, _ in imports(test)}
    device = {module_name(p, LIB): p for p in LIB.rglob("*.py")}
    device.update({"boot": FIRMWARE / "boot.py", "main": FIRMWARE / "main.py",
                   "board": BOARDS / "esp32_devkitc" / "board.py"})
    for name in only:
        assert name in device, f"{name}: no such module under firmware/lib"
        assert name not in modules, f"{name} is test-only but frozen"
        assert name in target_imports, f"{name}: no target test imports it"
        for importer, path in device.items():
            found = [lazy for imported, lazy in imports(path) if imported == name]
            if importer == name or not found:
                continue
            assert importer in NEVER_TAKEN.get(name, ()) and all(found), \
                f"the device needs {name}: {importer} imports it"


def test_aes192_is_out_of_the_device_s_reach():
    """ccm loads aes192 for 24-byte keys only; the device's payload key has 32 bytes,
    and its keystore refuses any other size."""
    cose = (LIB / "wearsafe" / "cose.py").read_text()
    keystore = (LIB / "wearsafe" / "keystore.py").read_text()
    assert "KEY_LEN = const(32)" in cose
    assert "if len(payload_key) != KEY_LEN:" in keystore
    lazy = [name for name, inside in imports(LIB / "wearsafe" / "crypto" / "ccm.py") if inside]
    assert "wearsafe.crypto.aes192" in lazy
