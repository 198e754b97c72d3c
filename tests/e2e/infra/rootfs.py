"""Root filesystems as tar streams, built from host files, for `docker import`.

No registry is reachable in CI, so images are assembled from what the host has: busybox-static
for the probe, and a glibc program plus exactly the libraries `ldd` names for Claude Code.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def parse_ldd(text: str) -> list[str]:
    """Absolute library paths (the loader included) from `ldd` output; vdso has none."""
    paths: list[str] = []
    for line in text.splitlines():
        if "not found" in line:
            raise ValueError(f"ldd: a library is missing: {line.strip()}")
        m = _LDD_PATH.search(line)
        if m and m.group(1) not in paths:
            paths.append(m.group(1))
    return paths


def shared_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if out.returncode != 0 and "not a dynamic executable" in (out.stdout + out.stderr):
        return []
    out.check_returncode()
    return parse_ldd(out.stdout)


@dataclass
class _Entry:
    kind: bytes  # tarfile.DIRTYPE / REGTYPE / SYMTYPE
    mode: int
    data: bytes | None = None  # inline content
    source: Path | None = None  # host file, dereferenced
    target: str = ""  # symlink target
    uid: int = 0


@dataclass
class Rootfs:
    """A declarative tree: parents are created implicitly, later entries replace earlier ones."""

    entries: dict[str, _Entry] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents):
            key = str(parent).lstrip("/")
            if key and key not in self.entries:
                self.entries[key] = _Entry(tarfile.DIRTYPE, 0o755)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0) -> Rootfs:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(tarfile.DIRTYPE, mode, uid=uid)
        return self

    def file(self, path: str, data: bytes | str, mode: int = 0o644) -> Rootfs:
        self._parents(path)
        raw = data.encode() if isinstance(data, str) else data
        self.entries[path.strip("/")] = _Entry(tarfile.REGTYPE, mode, data=raw)
        return self

    def copy(self, path: str, source: Path, mode: int | None = None) -> Rootfs:
        """Copy a host file (following symlinks) to `path`."""
        real = Path(source).resolve(strict=True)
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(
            tarfile.REGTYPE, mode if mode is not None else real.stat().st_mode & 0o7777, source=real
        )
        return self

    def symlink(self, path: str, target: str) -> Rootfs:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(tarfile.SYMTYPE, 0o777, target=target)
        return self

    def write_tar(self, out: BinaryIO) -> None:
        """Stream the tree as an uncompressed tar (parents first) into `out`."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries, key=lambda n: (n.count("/"), n)):
                e = self.entries[name]
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.uid, info.gid = e.kind, e.mode, e.uid, e.uid
                if e.kind == tarfile.SYMTYPE:
                    info.linkname = e.target
                    tar.addfile(info)
                elif e.kind == tarfile.DIRTYPE:
                    tar.addfile(info)
                elif e.source is not None:
                    info.size = e.source.stat().st_size
                    with e.source.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    info.size = len(e.data or b"")
                    tar.addfile(info, io.BytesIO(e.data or b""))


def busybox_tree(busybox: Path, fs: Rootfs | None = None) -> Rootfs:
    """busybox in /bin with every applet linked, enough of a userland for probes."""
    fs = fs or Rootfs()
    fs.copy("bin/busybox", busybox, 0o755)
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    for applet in listing.stdout.split():
        if applet != "busybox":
            fs.symlink(f"bin/{applet}", "busybox")
    fs.symlink("usr/bin/env", "/bin/busybox")
    fs.dir("tmp", 0o1777)
    fs.dir("root", 0o700)
    return fs


def glibc_program(fs: Rootfs, binary: Path, dest: str) -> Rootfs:
    """`binary` at `dest` plus the loader and libraries it links, at their host paths."""
    fs.copy(dest, binary, 0o755)
    for lib in shared_libraries(binary):
        fs.copy(lib.lstrip("/"), Path(lib))
    return fs


PASSWD = "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n"
GROUP = "root:x:0:\nsandbox:x:1000:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def user_basics(fs: Rootfs, ca_bundle: Path | None) -> Rootfs:
    """Users, name lookup through /etc/hosts (what `--add-host` writes), CA roots, a HOME."""
    fs.file("etc/passwd", PASSWD).file("etc/group", GROUP).file("etc/nsswitch.conf", NSSWITCH)
    if ca_bundle is not None and ca_bundle.exists():
        fs.copy("etc/ssl/certs/ca-certificates.crt", ca_bundle, 0o644)
    fs.dir("home/sandbox", 0o755, uid=1000)
    return fs
