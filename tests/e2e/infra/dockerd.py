"""A private Docker engine for one test session: started here, stopped here, nothing left behind.

It runs with iptables, forwarding and masquerading off, so containers reach the host's bridge
address and nothing beyond this machine. The data-root lives in the cache dir so imported
images survive between runs; the exec-root and socket live under a short /tmp path. A lock
file serialises sessions that share the data-root, and a state file lets the next session reap
a daemon that a crashed run left behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Iterable, Sequence

from broker.sandboxes.bridges import bridge_gateway
from tests.e2e.infra.paths import cache_dir, short_tmp

log = logging.getLogger(__name__)

BRIDGE = "docker0"


class DockerUnavailable(RuntimeError):
    """The engine cannot run here; the message says why (tests turn it into skip/fail)."""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def processes_mentioning(needles: Iterable[str]) -> list[int]:
    """Pids whose command line contains any of `needles` (our daemon, containerd, shims)."""
    needles = [n for n in needles if n]
    me = os.getpid()
    return [p for p in _pids() if p != me and any(n in _cmdline(p) for n in needles)]


def foreign_dockerds(own: Sequence[int] = ()) -> list[int]:
    out = []
    for pid in _pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "dockerd" and pid not in own and _alive(pid):  # zombies hold nothing
            out.append(pid)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    except OSError:
        pass
    return ""


def terminate(pids: Iterable[int], grace: float = 15.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL whatever is left."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def unmount_under(root: Path) -> None:
    """Lazily unmount anything still mounted below `root`, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(root):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def delete_link(name: str) -> None:
    if link_exists(name):
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


class DockerDaemon:
    """`start()` then use `.env` / `.docker(...)` / `.run(...)`, and `stop()` at the end."""

    def __init__(self, cache: Path | None = None, lock_timeout: float = 300.0) -> None:
        self.cache = cache or cache_dir()
        self.data_root = self.cache / "docker"
        self.state_file = self.cache / "dockerd.json"
        self.last_log = self.cache / "dockerd-last.log"
        self.lock_timeout = lock_timeout
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge_ip: str | None = None
        self.host = ""
        self.env: dict[str, str] = {}
        self.startup_seconds = 0.0
        self._lock: IO[str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> DockerDaemon:
        started = time.monotonic()
        if not shutil.which("dockerd") or not shutil.which("docker"):
            raise DockerUnavailable("docker.io is not installed (dockerd, docker)")
        self._acquire_lock()
        try:
            self._reap_stale()
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("dockerd ready in %.2fs, bridge %s", self.startup_seconds, self.bridge_ip)
        return self

    def stop(self) -> None:
        """Stop containers and the daemon, then remove docker0, mounts and the work dir."""
        try:
            if self.proc and self.proc.poll() is None:
                ids = self.docker("ps", "-aq", check=False, timeout=10).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=30)
                terminate([self.proc.pid], grace=20)
                self.proc.wait(timeout=5)
            if self.workdir:
                terminate(processes_mentioning([str(self.workdir)]), grace=5)
                unmount_under(self.workdir)
            delete_link(BRIDGE)
            if self.workdir:
                log_file = self.workdir / "dockerd.log"
                if log_file.exists():
                    shutil.copyfile(log_file, self.last_log)
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
        finally:
            self.proc = None
            self.workdir = None
            self._release_lock()

    def __enter__(self) -> DockerDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- using it ----------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True, timeout: float = 120.0,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout,
                             input=input.decode() if input else None, text=True, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:2])} failed ({out.returncode}): {out.stderr.strip()}")
        return out

    def run(self, image: str, argv: Sequence[str], *, flags: Sequence[str] = (),
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`docker run --rm FLAGS IMAGE ARGV`; the caller checks returncode/stdout/stderr."""
        return self.docker("run", "--rm", *flags, image, *argv, check=False, timeout=timeout)

    # -- internals ---------------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        self._lock = open(self.cache / "dockerd.lock", "w")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._release_lock()
                    raise DockerUnavailable(
                        f"another test session holds {self.cache}/dockerd.lock (its dockerd uses "
                        f"the shared data-root); waited {self.lock_timeout:.0f}s"
                    ) from None
                time.sleep(0.2)

    def _release_lock(self) -> None:
        if self._lock:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def _reap_stale(self) -> None:
        """Stop a daemon a crashed session left on our data-root, and clear what it held."""
        stale_dir = ""
        try:
            state = json.loads(self.state_file.read_text())
            stale_dir = str(state.get("workdir", ""))
        except (OSError, ValueError):
            pass
        ours = processes_mentioning([str(self.data_root), stale_dir])
        others = foreign_dockerds(own=ours)
        if others:
            raise DockerUnavailable(
                f"another docker engine is running here (pid {', '.join(map(str, others))}); "
                "the e2e suite starts its own on docker0, so stop that one first"
            )
        leftovers = ours + self._container_processes()
        if leftovers:
            log.warning("stopping %d processes a crashed run left behind: %s", len(leftovers), leftovers)
            terminate(leftovers, grace=2)
        unmount_under(self.data_root)
        if stale_dir.startswith("/tmp/ibd-"):
            unmount_under(Path(stale_dir))
            shutil.rmtree(stale_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        delete_link(BRIDGE)  # a bridge nobody owns any more

    def _container_processes(self) -> list[int]:
        """Processes still inside the cgroup of one of our data-root's containers."""
        try:
            ids = os.listdir(self.data_root / "containers")
        except OSError:
            return []
        needles = [f"/docker/{i}" for i in ids if len(i) == 64]
        found = []
        for pid in _pids():
            try:
                cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            if any(n in cgroup for n in needles):
                found.append(pid)
        return found

    def _launch(self) -> None:
        self.workdir = short_tmp("ibd-")
        sock = self.workdir / "docker.sock"
        self.data_root.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
            "--storage-driver=overlay2",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.workdir / "x"),
            "--pidfile", str(self.workdir / "docker.pid"),
            "-H", f"unix://{sock}",
        ]
        self.host = f"unix://{sock}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DOCKER_", "CONTAINERD_"))}
        self.env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.workdir / "cli"))
        log_file = (self.workdir / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        self.state_file.write_text(json.dumps({"pid": self.proc.pid, "workdir": str(self.workdir)}))

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc and self.workdir
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DockerUnavailable(f"dockerd exited ({self.proc.returncode}):\n{self._log_tail()}")
            ok = self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=10)
            if ok.returncode == 0:
                self.bridge_ip = bridge_gateway(BRIDGE)
                if self.bridge_ip:
                    return
            if time.monotonic() > deadline:
                raise DockerUnavailable(f"dockerd not ready after {timeout:.0f}s:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / "dockerd.log").read_text(errors="replace") if self.workdir else ""
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
