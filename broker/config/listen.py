"""Where the proxy listens: parsing `listen` entries and turning them into concrete binds.

A sandbox must reach the proxy, and nothing else should. Loopback serves Docker Desktop
(its `host-gateway` reaches host loopback) and rootless engines (slirp4netns and pasta lead to
host loopback); rootful engines on Linux reach the host only on their bridge's gateway, so
`docker` and `podman` name those addresses symbolically: they are only known at run time, may
appear after the broker starts, and go away again (podman removes its bridge with its last
container). With no `listen` in the config, Linux serves loopback and both bridges.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from broker.common.errors import ConfigError

DOCKER = "docker"
PODMAN = "podman"
BRIDGE_HOSTS = (DOCKER, PODMAN)
# The interfaces each symbol stands for: podman names its default bridge `podman0` with the
# netavark backend and `cni-podman0` with CNI (Debian 12's podman 4.3). docker's comes from the
# `docker_bridge` setting.
PODMAN_BRIDGES = ("podman0", "cni-podman0")
DEFAULT_PORT = 8765
WILDCARDS = ("0.0.0.0", "::")


def default_listen(platform: str) -> tuple[str, ...]:
    """`listen` when the config has none: loopback, plus on Linux every container bridge."""
    loopback = f"127.0.0.1:{DEFAULT_PORT}"
    if platform.startswith("linux"):
        return (loopback, f"{DOCKER}:{DEFAULT_PORT}", f"{PODMAN}:{DEFAULT_PORT}")
    return (loopback,)


def bridge_interfaces(symbol: str, docker_bridge: str) -> tuple[str, ...]:
    """The interface names a symbolic host stands for."""
    return (docker_bridge,) if symbol == DOCKER else PODMAN_BRIDGES if symbol == PODMAN else ()


@dataclass(frozen=True)
class ListenSpec:
    """One `listen` entry; `host` is an IP literal, `localhost`, or a symbol (`docker`, `podman`)."""

    host: str
    port: int

    @property
    def is_docker(self) -> bool:
        return self.host == DOCKER

    @property
    def is_bridge(self) -> bool:
        """A container bridge's gateway, known only while the bridge exists."""
        return self.host in BRIDGE_HOSTS

    @property
    def is_wildcard(self) -> bool:
        return self.host in WILDCARDS

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(text: str, entry: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"{entry!r}: the port must be a number from 0 to 65535")
    port = int(text)
    if port > 65535:
        raise ConfigError(f"{entry!r}: port {port} is above 65535")
    return port


def _host(text: str, entry: str) -> str:
    """Accept IP literals, `localhost`, `docker` and `podman`: a DNS name could resolve anywhere."""
    if text in (*BRIDGE_HOSTS, "localhost"):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(
            f"{entry!r}: the host must be an IP address, 'localhost', 'docker' or 'podman' (got {text!r})"
        ) from None


def parse_listen(entry: str) -> ListenSpec:
    """Parse `host:port`, `[v6]:port`, `docker:port`, `podman:port`, or a bare symbol (port 8765)."""
    text = entry.strip()
    if not text:
        raise ConfigError("an empty listen entry: write host:port, e.g. 127.0.0.1:8765")
    if text in BRIDGE_HOSTS:
        return ListenSpec(text, DEFAULT_PORT)
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{entry!r}: write an IPv6 address as [address]:port")
        host = _host(inside, entry)
        if ":" not in host:
            raise ConfigError(f"{entry!r}: brackets are only for IPv6 addresses")
        return ListenSpec(host, _port(rest[1:], entry))
    if text.count(":") != 1:
        hint = "write an IPv6 address as [address]:port" if text.count(":") > 1 else "write host:port"
        raise ConfigError(f"{entry!r}: {hint}")
    host_text, _, port_text = text.partition(":")
    return ListenSpec(_host(host_text, entry), _port(port_text, entry))


def resolve_listen(specs: Iterable[ListenSpec]) -> tuple[list[tuple[str, int]], list[str]]:
    """Concrete (host, port) binds for the fixed entries of `specs`, and warnings to show.

    Bridge symbols are not here: the bridge watch binds them while their bridge exists
    (see `bridge_binds`). Wildcards are kept, since the user wrote them, but every network can
    then reach the proxy.
    """
    binds: list[tuple[str, int]] = []
    warnings: list[str] = []
    for spec in specs:
        if spec.is_bridge:
            continue
        if spec.is_wildcard:
            warnings.append(
                f"listen {spec}: the proxy accepts connections from EVERY network this machine "
                "is on, not just local sandboxes; prefer 127.0.0.1 and 'docker'/'podman'"
            )
        bind = (spec.host, spec.port)
        if spec.port != 0 and bind in binds:
            continue
        binds.append(bind)
    return binds, warnings


def bridge_binds(
    specs: Iterable[ListenSpec], gateways: Mapping[str, str], docker_bridge: str,
    fixed: Iterable[tuple[str, int]] = (),
) -> list[tuple[str, int]]:
    """The (address, port) binds the bridge symbols stand for now, given the bridges that
    exist (`gateways`: interface -> IPv4). Binds a fixed entry already covers (an explicit
    `172.17.0.1:8765` next to `docker:8765`) and duplicates are left out."""
    taken = {b for b in fixed if b[1] != 0}
    out: list[tuple[str, int]] = []
    for spec in specs:
        if not spec.is_bridge:
            continue
        for iface in bridge_interfaces(spec.host, docker_bridge):
            address = gateways.get(iface)
            bind = (address, spec.port) if address else None
            if bind and bind not in taken and bind not in out:
                out.append(bind)
    return out
