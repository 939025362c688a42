"""Device libraries that pip cannot install, fetched from pip's own index.

micropython-umqtt.simple ships an sdist without setup.py, so `pip install`
and `pip download` both fail on it. We read the pin from pyproject.toml,
find the sdist on the package index pip is configured with (PEP 503 simple
API), check its sha256 before unpacking anything, and unpack only the listed
files into third_party/lib/.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from host_tools.paths import CACHE, ROOT, THIRD_PARTY_LIB, ToolError

DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class DeviceLib:
    name: str
    version: str
    sha256: str
    files: tuple[str, ...]

    @property
    def stamp(self) -> Path:
        return THIRD_PARTY_LIB / f".{self.name}-{self.version}-{self.sha256[:16]}"


def pinned_libs(pyproject: Path = ROOT / "pyproject.toml") -> list[DeviceLib]:
    table = tomllib.loads(pyproject.read_text())["tool"]["wearsafe"]["device-libs"]
    return [
        DeviceLib(name, pin["version"], pin["sha256"].lower(), tuple(pin["files"]))
        for name, pin in table.items()
    ]


def pip_indexes() -> list[str]:
    """The index URLs pip would use, in the order it would use them."""
    def pip_config(key: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", key],
            capture_output=True, text=True, check=False,
        )
        return out.stdout.split() if out.returncode == 0 else []

    primary = os.environ.get("PIP_INDEX_URL", "").split() or pip_config("global.index-url")
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "").split() or pip_config(
        "global.extra-index-url")
    return (primary or [DEFAULT_INDEX]) + extra


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _read(url: str) -> bytes:
    if url.startswith("file:") and url.endswith("/"):
        url += "index.html"  # a file:// index is a tree of index.html pages, as pip reads it
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def sdist_url(lib: DeviceLib, index: str) -> str | None:
    project = re.sub(r"[-_.]+", "-", lib.name).lower()
    page_url = index.rstrip("/") + f"/{project}/"
    try:
        page = _read(page_url).decode()
    except OSError:
        return None
    parser = _Links()
    parser.feed(page)
    suffix = f"-{lib.version}.tar.gz"
    for href in parser.hrefs:
        url = href.split("#")[0]
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        name = filename.removesuffix(suffix)
        if filename.endswith(suffix) and re.sub(r"[-_.]+", "-", name).lower() == project:
            return urllib.parse.urljoin(page_url, url)
    return None


def fetch_sdist(lib: DeviceLib) -> bytes:
    cached = CACHE / "devlibs" / f"{lib.name}-{lib.version}.tar.gz"
    if cached.exists():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == lib.sha256:
            return data
    indexes = pip_indexes()
    for index in indexes:
        url = sdist_url(lib, index)
        if url:
            data = _read(url)
            break
    else:
        raise ToolError(
            f"{lib.name} {lib.version}: no sdist found on pip's indexes ({', '.join(indexes)}); "
            "check your network or PIP_INDEX_URL")
    verify_sha256(lib, data)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def verify_sha256(lib: DeviceLib, data: bytes) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != lib.sha256:
        raise ToolError(
            f"{lib.name} {lib.version}: sha256 {got} does not match the pin {lib.sha256} in "
            "pyproject.toml; refusing to install it (the download is corrupt or was tampered with)")


def unpack(lib: DeviceLib, data: bytes, dest: Path = THIRD_PARTY_LIB) -> None:
    """Verify, then extract only the pinned files; all or nothing."""
    verify_sha256(lib, data)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".devlib-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
            for rel in lib.files:
                member = members.get(rel)
                if member is None:
                    raise ToolError(f"{lib.name} {lib.version}: the sdist has no {rel}")
                source = tar.extractfile(member)
                assert source is not None
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(source.read())
        for rel in lib.files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, dest / rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_all() -> None:
    for lib in pinned_libs():
        if lib.stamp.exists() and all((THIRD_PARTY_LIB / f).exists() for f in lib.files):
            continue
        unpack(lib, fetch_sdist(lib))
        lib.stamp.touch()
        print(f"installed device library {lib.name} {lib.version} into {THIRD_PARTY_LIB}")
