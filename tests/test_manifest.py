"""board/esp32_devkitc/manifest.py, read the way MicroPython's manifest tool reads it:
every path it names exists and the frozen set is the application, the boot selector
and the board module, with no simulator or test code."""

from __future__ import annotations

from pathlib import Path

from host_tools.paths import BOARDS, FIRMWARE

MANIFEST = BOARDS / "esp32_devkitc" / "manifest.py"


def frozen_modules() -> tuple[list[str], list[str]]:
    """(modules frozen, manifests included), with paths relative to the manifest."""
    modules: list[str] = []
    included: list[str] = []
    here = MANIFEST.parent

    def freeze(path: str, script: str | None = None, opt: int | None = None) -> None:
        root = (here / path).resolve()
        assert root.is_dir(), f"freeze({path!r}): no such directory"
        modules.extend(str(p.relative_to(root).with_suffix("")).replace("/", ".")
                       for p in sorted(root.rglob("*.py")))

    def module(name: str, base_path: str = ".", opt: int | None = None) -> None:
        assert (here / base_path / name).is_file(), f"module({name!r}): no such file"
        modules.append(Path(name).stem)

    def include(manifest: str, **kwargs: object) -> None:
        included.append(manifest)

    exec(compile(MANIFEST.read_text(), str(MANIFEST), "exec"),
         {"freeze": freeze, "module": module, "include": include})
    return modules, included


def test_the_manifest_freezes_the_app_the_boot_selector_and_the_board():
    modules, included = frozen_modules()
    assert included == ["$(PORT_DIR)/boards/manifest.py"]  # the port's own, umqtt included
    expected = {str(p.relative_to(FIRMWARE / "lib").with_suffix("")).replace("/", ".")
                for p in (FIRMWARE / "lib").rglob("*.py")}
    assert expected <= set(modules) and {"wearsafe.app", "bootsel", "board"} <= set(modules)
    assert not [m for m in modules if m.startswith(("simhw", "tests", "wstest"))]
    assert len(modules) == len(set(modules))
