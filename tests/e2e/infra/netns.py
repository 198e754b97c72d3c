"""A network-namespace sandbox: a lighter stand-in for a container, with the host's files.

The namespace sees the host only through a veth pair with link-local addresses picked here
(169.254.X.Y/30, never another machine's), and resolves `inference.local` to the host side
through `/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over /etc/hosts. The host's
loopback is out of reach from inside, which is the point: a loopback-only broker is invisible.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from tests.e2e.infra.dockerd import delete_link, terminate

HOSTS_ALIAS = "inference.local"
_counter = itertools.count()


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def used_ipv4() -> set[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True)
    return {a["local"] for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])}


def link_local_pair(seed: int, used: set[str]) -> tuple[str, str]:
    """A free 169.254.X.Y/30 pair (host .1, sandbox .2 of the block), starting from `seed`.

    X spreads parallel runs by pid; the loop skips blocks in use. 169.254.169.254 (cloud
    metadata) is never a host or sandbox address since those end in 4k+1 or 4k+2.
    """
    for step in range(250 * 63):
        n = seed + step
        x, k = 1 + (n // 63) % 250, n % 63
        host, sandbox = f"169.254.{x}.{4 * k + 1}", f"169.254.{x}.{4 * k + 2}"
        if host not in used and sandbox not in used:
            return host, sandbox
    raise RuntimeError("no free 169.254.0.0/16 /30 block left")


def hosts_file(host_ip: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{host_ip}\t{HOSTS_ALIAS}\n"


@dataclass
class NetnsSandbox:
    name: str
    host_if: str
    sandbox_if: str
    host_ip: str
    sandbox_ip: str
    env: dict[str, str] = field(default_factory=dict)  # the base environment for run()

    @property
    def etc_dir(self) -> Path:
        return Path("/etc/netns") / self.name

    @classmethod
    def create(cls) -> NetnsSandbox:
        n, pid = next(_counter), os.getpid()
        tag = f"{pid % 100000}n{n}"
        host_ip, sandbox_ip = link_local_pair((pid * 17 + n) % (250 * 63), used_ipv4())
        box = cls(
            name=f"ib-sbx-{tag}", host_if=f"ibh{tag}", sandbox_if=f"ibs{tag}",
            host_ip=host_ip, sandbox_ip=sandbox_ip,
            env={"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        box.close()  # a crashed run with the same pid may have left these names behind
        try:
            box._build()
        except BaseException:
            box.close()
            raise
        return box

    def _build(self) -> None:
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        (self.etc_dir / "hosts").write_text(hosts_file(self.host_ip))
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.sandbox_if,
            "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.sandbox_ip}/30", "dev", self.sandbox_if)
        _ip("-n", self.name, "link", "set", self.sandbox_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0,
            input: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace with exactly `self.env` plus `env` (nothing else
        leaks in from the test process), and return its output; never raises on exit status."""
        full_env = {**self.env, **(env or {})}
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], env=full_env, cwd=cwd,
                              input=input, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
              **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the namespace (a server, a streaming client)."""
        full_env = {**self.env, **(env or {})}
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=full_env,
                                **kwargs)  # type: ignore[call-overload]

    def close(self) -> None:
        """Remove the namespace, both veth ends and /etc/netns/<ns>; safe to call twice."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True, check=False).stdout.split()
        if pids:
            terminate([int(p) for p in pids], grace=5)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        delete_link(self.host_if)  # normally gone with its peer
        shutil.rmtree(self.etc_dir, ignore_errors=True)

    def exists(self) -> bool:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return any(line.split()[0] == self.name for line in listed.splitlines() if line.strip())


def is_link_local(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network("169.254.0.0/16")
