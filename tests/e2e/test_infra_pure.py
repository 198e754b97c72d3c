"""The e2e machinery's pure parts: ldd parsing, address picking, rootfs tar layout."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.e2e.infra.netns import hosts_file, is_link_local, link_local_pair
from tests.e2e.infra.rootfs import Rootfs, parse_ldd

# Captured from `ldd bin/claude.exe` (Claude Code 2.1.197, Debian 12).
LDD = """\
\tlinux-vdso.so.1 (0x00007fe1553d4000)
\tlibrt.so.1 => /lib/x86_64-linux-gnu/librt.so.1 (0x00007fe1553be000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fe1551dc000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007fe1553d6000)
\tlibpthread.so.0 => /lib/x86_64-linux-gnu/libpthread.so.0 (0x00007fe1551d7000)
"""


def test_parse_ldd_lists_libraries_and_loader() -> None:
    assert parse_ldd(LDD) == [
        "/lib/x86_64-linux-gnu/librt.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libpthread.so.0",
    ]


def test_parse_ldd_refuses_missing_library() -> None:
    with pytest.raises(ValueError, match="libfoo"):
        parse_ldd("\tlibfoo.so.1 => not found\n")


@pytest.mark.parametrize("seed", [0, 1, 62, 63, 5000, 250 * 63 - 1])
def test_link_local_pair_is_a_30_block(seed: int) -> None:
    host, sandbox = link_local_pair(seed, set())
    assert is_link_local(host) and is_link_local(sandbox)
    h, s = host.split("."), sandbox.split(".")
    assert h[:3] == s[:3] and int(h[3]) % 4 == 1 and int(s[3]) == int(h[3]) + 1
    assert "169.254.169.254" not in (host, sandbox)


def test_link_local_pair_skips_used_addresses() -> None:
    first = link_local_pair(7, set())
    second = link_local_pair(7, {first[1]})
    assert second != first and first[1] not in second


def test_hosts_file_maps_inference_local_only_to_host_side() -> None:
    lines = [line.split() for line in hosts_file("169.254.3.1").splitlines()]
    assert ["169.254.3.1", "inference.local"] in lines
    assert ["127.0.0.1", "localhost"] in lines


def test_rootfs_tar_has_parents_first_and_right_types(tmp_path: Path) -> None:
    src = tmp_path / "prog"
    src.write_bytes(b"\x7fELFdata")
    src.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(src)
    fs = Rootfs().copy("usr/local/bin/prog", link).symlink("bin/sh", "busybox")
    fs.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n").dir("tmp", 0o1777)
    buf = io.BytesIO()
    fs.write_tar(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
        prog = tar.extractfile("usr/local/bin/prog").read()  # type: ignore[union-attr]
    assert names.index("usr") < names.index("usr/local") < names.index("usr/local/bin/prog")
    assert prog == b"\x7fELFdata" and members["usr/local/bin/prog"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
