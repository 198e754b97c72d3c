"""Podman for the tests: rootful (as root) and rootless (as a plain user), images by `podman
import` of the same local rootfs trees the docker images use. No daemon to start: each command
is the engine.

This machine's hard limits are below podman's default container limits (nofile 1048576), so
every container would fail "error setting rlimits"; a containers.conf of the test's own, named by
CONTAINERS_CONF, sets `default_ulimits` to 1024 instead. `env` carries it to every podman command
(the broker's CLI included).

Rootless: a user made for the tests (subuids from `useradd`), a private XDG_RUNTIME_DIR, and a
usable /dev/net/tun for slirp4netns; commands run through `runuser`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tests.e2e.infra.images import (CA_BUNDLE, busybox_path, claude_binary, file_sha256, shared_libraries,
                                    _digest)
from tests.e2e.infra.paths import cache_dir
from tests.e2e.infra.rootfs import Rootfs, busybox_tree, glibc_program, user_basics

CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
ROOTLESS_USER = "ib-rootless"


def containers_conf() -> Path:
    path = cache_dir() / "podman-containers.conf"
    if not path.exists() or path.read_text() != CONF:
        path.write_text(CONF)
    path.chmod(0o644)
    return path


@dataclass
class Podman:
    """`podman` as root, or as `user` (rootless)."""

    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup_seconds: float = 0.0

    @classmethod
    def rootful(cls) -> Podman:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERS_"))}
        env["CONTAINERS_CONF"] = str(containers_conf())
        return cls(None, env)

    @classmethod
    def rootless(cls) -> Podman:
        started = time.monotonic()
        try:
            pw = pwd.getpwnam(ROOTLESS_USER)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", ROOTLESS_USER], check=True, capture_output=True)
            pw = pwd.getpwnam(ROOTLESS_USER)
        tun = Path("/dev/net/tun")
        if tun.exists() and stat.S_IMODE(tun.stat().st_mode) & 0o006 != 0o006:
            tun.chmod(0o666)  # slirp4netns opens it as the user
        runtime = Path(f"/tmp/ib-podman-{pw.pw_uid}")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.chown(runtime, pw.pw_uid, pw.pw_gid)
        conf = Path(pw.pw_dir) / "ib-containers.conf"
        conf.write_text(CONF)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": pw.pw_dir, "USER": ROOTLESS_USER,
               "LOGNAME": ROOTLESS_USER, "XDG_RUNTIME_DIR": str(runtime), "CONTAINERS_CONF": str(conf)}
        return cls(ROOTLESS_USER, env, time.monotonic() - started)

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid if self.user else 0

    def as_user(self, argv: Sequence[str]) -> list[str]:
        """`argv` run as this podman's user, with its environment."""
        if not self.user:
            return list(argv)
        return ["runuser", "-u", self.user, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *argv]

    def podman(self, *args: str, check: bool = True, timeout: float = 120.0,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.as_user(["podman", *args]), env=self.env, capture_output=True, timeout=timeout,
                             input=stdin, check=False, cwd="/")
        done = subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(errors="replace"),
                                           out.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def run(self, image: str, argv: Sequence[str], *, flags: Sequence[str] = (),
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.podman("run", "--rm", *flags, image, *argv, check=False, timeout=timeout)

    def info(self) -> str:
        return self.podman("info", "--format", "json").stdout

    def cleanup(self) -> None:
        self.podman("rm", "-af", "-t", "0", check=False, timeout=60)

    # -- images ------------------------------------------------------------------------------

    def _import(self, build: Callable[[], tuple[Rootfs, list[str]]], tag: str, alias: str) -> str:
        if self.podman("image", "exists", tag, check=False).returncode != 0:
            fs, changes = build()
            argv = ["import"]
            for change in changes:
                argv += ["-c", change]
            tar = cache_dir() / f"podman-import-{os.getpid()}.tar"
            with tar.open("wb") as fh:
                fs.write_tar(fh)
            try:
                self.podman(*argv, "-", tag, stdin=tar.read_bytes(), timeout=300)
            finally:
                tar.unlink(missing_ok=True)
        self.podman("tag", tag, alias)
        return alias

    def probe_image(self) -> str:
        busybox = busybox_path()
        tag = f"localhost/ib-probe:{_digest('probe', file_sha256(busybox))}"
        return self._import(lambda: (busybox_tree(busybox), ["ENV PATH=/bin"]), tag, "localhost/probe:latest")

    def claude_image(self, user: str = "1000:1000") -> str:
        """The Claude Code image, as the docker tests build it; `user` may be a name (`sandbox`)."""
        binary, busybox = claude_binary(), busybox_path()
        parts = [file_sha256(binary), file_sha256(busybox)] + [file_sha256(Path(p)) for p in shared_libraries(binary)]
        slug = "".join(ch if ch.isalnum() else "-" for ch in user)

        def build() -> tuple[Rootfs, list[str]]:
            fs = busybox_tree(busybox)
            glibc_program(fs, binary, "usr/local/bin/claude")
            user_basics(fs, CA_BUNDLE)
            return fs, ["ENV PATH=/usr/local/bin:/bin", "ENV HOME=/home/sandbox", "ENV SHELL=/bin/sh",
                        "WORKDIR /home/sandbox", f"USER {user}"]

        tag = f"localhost/ib-claude-{slug}:{_digest('claude', *parts)}"
        return self._import(build, tag, f"localhost/claude-code-{slug}:latest")


def podman_available() -> str | None:
    """Why podman cannot run here, or None."""
    if not shutil.which("podman"):
        return "podman is not installed (apt-get install podman uidmap slirp4netns)"
    return None


def as_user_python(podman: Podman, where: Path, python: str) -> str:
    """A launcher that runs `python` as the rootless user, environment kept (for the broker and
    its CLI, which must be the same user as their rootless engine)."""
    pw = pwd.getpwnam(podman.user or "root")
    launcher = where / "python-as-user"
    launcher.write_text(f'#!/bin/sh\nexec setpriv --reuid={pw.pw_uid} --regid={pw.pw_gid} --init-groups -- '
                        f'{python} "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def chown_tree(root: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)
