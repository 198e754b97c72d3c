"""The tools the host-Claude-Code tests run, found or installed into a cache directory.

- mitmproxy gets a virtualenv of its own: 11.0.2 (the last release for Python 3.11) pins
  `h11<=0.14`, while the anthropic SDK's HTTP library needs `h11>=0.16`, so it cannot join
  the test extra without pip falling back to mitmproxy 6.
- Claude Code twice: the release CI installs (`claude` on PATH, installed by .ci/run with
  `--prefer-online`) and a pinned older one in the cache (not global), so a change in its
  lock protocol shows up as a failing test.

`python -m tests.hosttools` installs both (.ci/run does); the tests install what is missing.
Only stdlib here: .ci/run runs it before the venv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MITMPROXY_VERSION = "11.0.2"
PINNED_CLAUDE_VERSION = "2.1.197"
PROFILE_CLAUDE_VERSION = (2, 1, 332)  # the release providers/anthropic-oauth.yaml's request mirrors


def cache_dir() -> Path:
    base = os.environ.get("INFERENCE_BROKER_TEST_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "inference-broker-tests"


def _locked(name: str):
    import fcntl

    cache_dir().mkdir(parents=True, exist_ok=True)
    fh = open(cache_dir() / f".{name}.install-lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX)  # two test runs never install into one directory at once
    return fh


def installed(find) -> Path | None:
    """`find()`, or None when installing failed (no registry here): the test then says why."""
    try:
        return find()
    except (OSError, subprocess.CalledProcessError):
        return None


def mitmdump(install: bool = True) -> Path | None:
    found = shutil.which("mitmdump")
    if found:
        return Path(found)
    venv = cache_dir() / f"mitmproxy-{MITMPROXY_VERSION}"
    exe, done = venv / "bin" / "mitmdump", venv / ".installed"
    if done.exists() or not install:
        return exe if done.exists() else None
    with _locked("mitmproxy"):
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)  # a half-made one from an interrupted run
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                            f"mitmproxy=={MITMPROXY_VERSION}"], check=True)
            done.touch()
    return exe if exe.exists() else None


def pinned_claude(install: bool = True, version: str = PINNED_CLAUDE_VERSION) -> Path | None:
    prefix = cache_dir() / f"claude-code-{version}"
    exe = prefix / "node_modules" / ".bin" / "claude"
    if exe.exists() or not install or shutil.which("npm") is None:
        return exe if exe.exists() else None
    with _locked("claude-code"):
        if not exe.exists():
            subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-fund", "--no-audit",
                            f"@anthropic-ai/claude-code@{version}"], check=True)
    return exe if exe.exists() else None


def ci_claude() -> Path | None:
    """The release on PATH (what .ci/run installed), or the one a developer points at."""
    chosen = os.environ.get("INFERENCE_BROKER_TEST_CLAUDE") or shutil.which("claude")
    return Path(chosen) if chosen else None


def claude_version(exe: Path) -> str:
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(cache_dir())})
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else "?"


if __name__ == "__main__":
    print("mitmdump:", mitmdump())
    claude = pinned_claude()
    print("pinned Claude Code:", claude, claude_version(claude) if claude else "")
