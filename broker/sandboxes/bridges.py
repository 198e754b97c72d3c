"""Finding the Linux docker bridge's gateway address, the one place containers reach the host.

`--add-host inference.local:host-gateway` resolves to this address on the Linux engine, so the
proxy must listen there. Docker may start after the broker, hence `watch_bridge`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import shutil
import socket
import struct
import subprocess
from typing import Callable

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "docker0"
_SIOCGIFADDR = 0x8915  # linux/sockios.h


def parse_ip_addr_json(text: str) -> str | None:
    """The first global IPv4 in `ip -j -4 addr show dev NAME` output, or None."""
    try:
        links = json.loads(text or "[]")
    except ValueError:
        return None
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            local = info.get("local") if isinstance(info, dict) else None
            if info.get("family") == "inet" and local and info.get("scope", "global") == "global":
                try:
                    return str(ipaddress.IPv4Address(local))
                except ValueError:
                    continue
    return None


def _via_ip(name: str, ip: str) -> str | None:
    try:
        out = subprocess.run(
            [ip, "-j", "-4", "addr", "show", "dev", name],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("ip addr failed: %s", exc)
        return None
    return parse_ip_addr_json(out.stdout) if out.returncode == 0 else None


def _via_ioctl(name: str) -> str | None:
    """The interface's primary IPv4 via SIOCGIFADDR, for machines without iproute2."""
    if len(name.encode()) > 15:
        return None
    try:
        import fcntl  # POSIX only: imported here so the package still imports on Windows
    except ImportError:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()))
    except OSError:
        return None  # no such interface, or no IPv4 on it
    return socket.inet_ntoa(raw[20:24])


def bridge_gateway(name: str = DEFAULT_BRIDGE) -> str | None:
    """The bridge's IPv4 (e.g. 172.17.0.1), or None when the bridge does not exist (yet)."""
    ip = shutil.which("ip")
    return _via_ip(name, ip) if ip else _via_ioctl(name)


async def watch_bridge(
    interval: float = 5.0,
    name: str = DEFAULT_BRIDGE,
    *,
    probe: Callable[[str], str | None] = bridge_gateway,
) -> str:
    """Poll until bridge `name` has an address and return it.

    Cancel the task to stop watching. The probe runs in a thread so a slow `ip` never
    stalls the loop.
    """
    while True:
        address = await asyncio.to_thread(probe, name)
        if address:
            log.info("docker bridge %s is up at %s", name, address)
            return address
        await asyncio.sleep(interval)
