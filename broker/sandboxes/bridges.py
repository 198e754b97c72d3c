"""Container bridges' gateway addresses, the one place rootful containers reach the host.

`--add-host inference.local:host-gateway` resolves to docker0's address on the Linux engine,
and rootful podman's containers reach the host on `podman0` / `cni-podman0`, so the proxy must
listen there. Engines start after the broker, and podman removes its bridge with its last
container: `BridgeSites` binds each bridge address while it exists, woken by the kernel's
address events (rtnetlink) so a container that has just started finds the broker there.
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
from typing import Awaitable, Callable, Iterable, Sequence

from broker.common.errors import BrokerError
from broker.config.listen import ListenSpec, bridge_binds, bridge_interfaces

log = logging.getLogger(__name__)

DEFAULT_BRIDGE = "docker0"
_SIOCGIFADDR = 0x8915  # linux/sockios.h
_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR = 0x1, 0x10  # linux/rtnetlink.h


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


def gateways(names: Iterable[str]) -> dict[str, str]:
    """{interface: IPv4} for those of `names` that exist and have an address."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(names):
        address = bridge_gateway(name)
        if address:
            out[name] = address
    return out


class AddressEvents:
    """Wakes a waiter when a link or an IPv4 address comes or goes (rtnetlink), or after
    `interval` seconds where netlink is not available (or as a safety net if an event is lost)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)  # type: ignore[attr-defined]
            sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR))
            sock.setblocking(False)
            self._sock = sock
        except (AttributeError, OSError) as exc:
            log.debug("no rtnetlink (%s): polling every %.1fs", exc, interval)

    async def wait(self) -> None:
        if self._sock is None:
            await asyncio.sleep(self.interval)
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recv(self._sock, 65536), self.interval)
        except asyncio.TimeoutError:
            return
        except OSError as exc:  # e.g. ENOBUFS after a burst: rescan anyway
            log.debug("rtnetlink: %s", exc)
        while True:  # one rescan covers a burst of events
            try:
                self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class BridgeSites:
    """Keeps the proxy listening on each bridge address the `docker`/`podman` listen entries
    stand for, for as long as that bridge has it.

    `bind(host, port)` starts a site and returns its "host:port"; `unbind(shown)` stops it.
    `sync()` does one pass (at start, before the broker says it is ready); `run()` repeats it on
    every address event. A bind that fails is logged once and tried again on the next change.
    """

    def __init__(self, specs: Sequence[ListenSpec], docker_bridge: str, *,
                 bind: Callable[[str, int], Awaitable[str]], unbind: Callable[[str], Awaitable[None]],
                 fixed: Sequence[tuple[str, int]] = (), on_change: Callable[[], Awaitable[None]] | None = None,
                 interval: float = 5.0, probe: Callable[[Iterable[str]], dict[str, str]] | None = None) -> None:
        self.specs = [s for s in specs if s.is_bridge]
        self.docker_bridge = docker_bridge
        self._bind, self._unbind, self._fixed = bind, unbind, list(fixed)
        self._on_change, self._probe, self.interval = on_change, probe, interval
        self.sites: dict[tuple[str, int], str] = {}  # wanted bind -> the "host:port" serving it
        self._failed: set[tuple[str, int]] = set()

    @property
    def wanted(self) -> bool:
        return bool(self.specs)

    def _interfaces(self) -> list[str]:
        return [i for s in self.specs for i in bridge_interfaces(s.host, self.docker_bridge)]

    async def sync(self) -> bool:
        """Bind new bridge addresses, drop gone ones; True when anything changed."""
        found = await asyncio.to_thread(self._probe or gateways, self._interfaces())
        want = bridge_binds(self.specs, found, self.docker_bridge, self._fixed)
        changed = False
        for bind in [b for b in self.sites if b not in want]:
            shown = self.sites.pop(bind)
            try:
                await self._unbind(shown)
            finally:
                log.info("container bridge address %s is gone: stopped listening on %s", bind[0], shown)
            changed = True
        for bind in want:
            if bind in self.sites:
                continue
            try:
                self.sites[bind] = await self._bind(*bind)
            except (BrokerError, OSError) as exc:
                if bind not in self._failed:
                    log.error("cannot listen on the container bridge %s:%s: %s", bind[0], bind[1],
                              getattr(exc, "message", None) or exc)
                self._failed.add(bind)
                continue
            self._failed.discard(bind)
            log.info("container bridge at %s: listening on %s", bind[0], self.sites[bind])
            changed = True
        if changed and self._on_change is not None:
            await self._on_change()
        return changed

    async def run(self) -> None:
        """Follow the bridges until cancelled."""
        events = AddressEvents(self.interval)  # listening first, then looking: nothing slips between
        try:
            while True:
                try:
                    await self.sync()
                except Exception as exc:  # keep watching: the next event may fix it
                    log.error("container bridge watch: %s", exc)
                await events.wait()
        finally:
            events.close()
