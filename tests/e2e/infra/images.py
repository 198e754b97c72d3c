"""Locally built images, tagged by a hash of what went into them and rebuilt only when missing.

`probe:latest` is busybox-static (wget, sh, timeout: a client nobody here wrote).
`claude-code:latest` runs the real Claude Code CLI: npm's package ships a native glibc binary
(no Node needed), so the image is that binary, the libraries `ldd` lists, busybox, CA roots
and a HOME; it runs as uid 1000, like the `node` user of Node-based images.
`claude-root:latest` is the same image running as root (a commit of it, sharing its layer).
`$INFERENCE_BROKER_TEST_CLAUDE` names another Claude Code binary to build them from (another
release). `python -m tests.e2e.infra.images` builds them ahead of a test run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.e2e.infra.paths import cache_dir
from tests.e2e.infra.rootfs import Rootfs, busybox_tree, glibc_program, shared_libraries, user_basics

log = logging.getLogger(__name__)

RECIPE_VERSION = "1"  # bump when a recipe below changes
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CLAUDE_PACKAGE = "@anthropic-ai/claude-code"
CLAUDE_ENV = "INFERENCE_BROKER_TEST_CLAUDE"


@dataclass
class Built:
    tag: str  # the content-hash tag, e.g. ib-probe:3f2a...
    alias: str  # the friendly tag, e.g. probe:latest
    seconds: float
    cached: bool


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised by (path, inode, size, mtime) so warm runs skip 245 MB reads."""
    real = path.resolve()
    st = real.stat()
    key = f"{real}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    memo_path = cache_dir() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with real.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    memo[key] = h.hexdigest()
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_path)
    return memo[key]


def busybox_path() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).exists():
            return Path(candidate)
    raise FileNotFoundError("busybox-static is not installed")


def claude_binary() -> Path:
    """The native binary behind `claude` (npm's postinstall copies it over bin/claude.exe)."""
    found = os.environ.get(CLAUDE_ENV) or shutil.which("claude")
    if not found:
        raise FileNotFoundError(f"the Claude Code CLI is not installed (npm install -g {CLAUDE_PACKAGE})")
    real = Path(found).resolve()
    with real.open("rb") as f:
        if f.read(4) != b"\x7fELF":
            raise RuntimeError(f"{real} is not a native binary (a Node launcher?); reinstall {CLAUDE_PACKAGE}")
    return real


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE_VERSION, *parts)).encode()).hexdigest()[:16]


def _exists(env: dict[str, str], tag: str) -> bool:
    out = subprocess.run(["docker", "image", "inspect", tag], env=env, capture_output=True, check=False)
    return out.returncode == 0


def _import(env: dict[str, str], fs: Rootfs, tag: str, changes: list[str]) -> None:
    argv = ["docker", "import"]
    for change in changes:
        argv += ["-c", change]
    proc = subprocess.Popen(argv + ["-", tag], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        fs.write_tar(proc.stdin)
    finally:
        proc.stdin.close()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"docker import {tag} failed: {err.strip()}")


def _ensure(env: dict[str, str], name: str, alias: str, digest: str,
            build: Callable[[], tuple[Rootfs, list[str]]]) -> Built:
    start = time.monotonic()
    tag = f"ib-{name}:{digest}"
    cached = _exists(env, tag)
    if not cached:
        log.info("building image %s", tag)
        fs, changes = build()
        _import(env, fs, tag, changes)
    subprocess.run(["docker", "tag", tag, alias], env=env, check=True, capture_output=True)
    return Built(tag, alias, time.monotonic() - start, cached)


def ensure_probe_image(env: dict[str, str]) -> Built:
    busybox = busybox_path()
    digest = _digest("probe", file_sha256(busybox))
    return _ensure(env, "probe", "probe:latest", digest,
                   lambda: (busybox_tree(busybox), ["ENV PATH=/bin"]))


def ensure_claude_image(env: dict[str, str]) -> Built:
    binary, busybox = claude_binary(), busybox_path()
    libs = shared_libraries(binary)
    parts = [file_sha256(binary), file_sha256(busybox)] + [file_sha256(Path(p)) for p in libs]
    if CA_BUNDLE.exists():
        parts.append(file_sha256(CA_BUNDLE))

    def build() -> tuple[Rootfs, list[str]]:
        fs = busybox_tree(busybox)
        glibc_program(fs, binary, "usr/local/bin/claude")
        user_basics(fs, CA_BUNDLE)
        changes = [
            "ENV PATH=/usr/local/bin:/bin",
            "ENV HOME=/home/sandbox",
            "ENV SHELL=/bin/sh",
            "WORKDIR /home/sandbox",
            "USER 1000:1000",
        ]
        return fs, changes

    return _ensure(env, "claude", "claude-code:latest", _digest("claude", *parts), build)


def ensure_claude_root_image(env: dict[str, str]) -> Built:
    """`claude-code` with USER root and HOME=/root, committed from a stopped container."""
    base = ensure_claude_image(env)
    start = time.monotonic()
    tag = base.tag.replace("ib-claude:", "ib-claude-root:")
    cached = _exists(env, tag)
    if not cached:
        cid = subprocess.run(["docker", "create", base.tag, "true"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(["docker", "commit", "-c", "USER 0:0", "-c", "ENV HOME=/root", "-c", "WORKDIR /root",
                            cid, tag], env=env, check=True, capture_output=True)
        finally:
            subprocess.run(["docker", "rm", "-f", cid], env=env, capture_output=True, check=False)
    subprocess.run(["docker", "tag", tag, "claude-root:latest"], env=env, check=True, capture_output=True)
    return Built(tag, "claude-root:latest", time.monotonic() - start, cached)


def claude_version(env: dict[str, str], image: str) -> str:
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "claude", "--version"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    return out.stdout.strip() or out.stderr.strip()


def main() -> None:
    """Build both images into the cached data-root (CI can warm it before the test run)."""
    from tests.e2e.infra.dockerd import DockerDaemon

    logging.basicConfig(level=logging.INFO)
    with DockerDaemon() as daemon:
        for built in (ensure_probe_image(daemon.env), ensure_claude_image(daemon.env)):
            how = "cached" if built.cached else "built"
            print(f"{built.alias} = {built.tag} ({how}, {built.seconds:.1f}s)")


if __name__ == "__main__":
    main()
