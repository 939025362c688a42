"""Device libraries pip cannot install: pinned, sha256-checked, unpacked all or nothing."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from host_tools.device.devlibs import DeviceLib, fetch_sdist, pinned_libs, sdist_url, unpack
from host_tools.paths import THIRD_PARTY_LIB, ToolError


def make_sdist(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_umqtt_simple_is_installed_from_the_pinned_sdist():
    (lib,) = pinned_libs()
    assert (lib.name, lib.version) == ("micropython-umqtt-simple", "1.3.4")
    assert hashlib.sha256(fetch_sdist(lib)).hexdigest() == lib.sha256
    assert "class MQTTClient" in (THIRD_PARTY_LIB / "umqtt" / "simple.py").read_text()


def test_a_tampered_sdist_is_refused_and_nothing_is_written(tmp_path: Path):
    data = make_sdist({"umqtt/simple.py": b"evil = 1\n"})
    lib = DeviceLib("x", "1.0", "0" * 64, ("umqtt/simple.py",))
    with pytest.raises(ToolError, match="does not match the pin"):
        unpack(lib, data, tmp_path / "lib")
    assert not (tmp_path / "lib" / "umqtt").exists()


def test_only_the_pinned_files_are_unpacked(tmp_path: Path):
    data = make_sdist({"umqtt/simple.py": b"ok = 1\n", "setup.py": b"import os\n"})
    lib = DeviceLib("x", "1.0", hashlib.sha256(data).hexdigest(), ("umqtt/simple.py",))
    unpack(lib, data, tmp_path / "lib")
    assert [p.name for p in (tmp_path / "lib").rglob("*.py")] == ["simple.py"]


def test_a_missing_file_in_the_sdist_leaves_nothing_half_written(tmp_path: Path):
    data = make_sdist({"a.py": b"a = 1\n"})
    lib = DeviceLib("x", "1.0", hashlib.sha256(data).hexdigest(), ("a.py", "b.py"))
    with pytest.raises(ToolError, match="the sdist has no b.py"):
        unpack(lib, data, tmp_path / "lib")
    assert not list((tmp_path / "lib").rglob("*.py"))


def test_the_sdist_is_found_on_a_pep503_index(tmp_path: Path):
    page = tmp_path / "micropython-umqtt-simple"
    page.mkdir()
    (page / "index.html").write_text(
        '<a href="../files/micropython-umqtt.simple-1.3.3.tar.gz#sha256=aa">old</a>'
        '<a href="../files/micropython-umqtt.simple-1.3.4.tar.gz#sha256=bb">new</a>')
    lib = DeviceLib("micropython-umqtt.simple", "1.3.4", "bb" * 32, ("umqtt/simple.py",))
    url = sdist_url(lib, tmp_path.as_uri())
    assert url is not None and url.endswith("/files/micropython-umqtt.simple-1.3.4.tar.gz")
