"""Where the proxy listens: parsing `listen` entries and turning them into concrete binds.

A sandbox must reach the proxy, and nothing else should. Loopback serves Docker Desktop
(its `host-gateway` reaches host loopback); the Linux engine reaches the host only on the
bridge gateway, so `docker` names that address symbolically: it is only known at run time
and may appear after the broker starts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from broker.common.errors import ConfigError

DOCKER = "docker"
DEFAULT_PORT = 8765
WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class ListenSpec:
    """One `listen` entry; `host` is an IP literal, `localhost`, or the symbol `docker`."""

    host: str
    port: int

    @property
    def is_docker(self) -> bool:
        return self.host == DOCKER

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
    """Accept IP literals, `localhost` and `docker`: a DNS name could resolve anywhere."""
    if text in (DOCKER, "localhost"):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(
            f"{entry!r}: the host must be an IP address, 'localhost' or 'docker' (got {text!r})"
        ) from None


def parse_listen(entry: str) -> ListenSpec:
    """Parse `host:port`, `[v6]:port`, `docker:port` or bare `docker` (port 8765)."""
    text = entry.strip()
    if not text:
        raise ConfigError("an empty listen entry: write host:port, e.g. 127.0.0.1:8765")
    if text == DOCKER:
        return ListenSpec(DOCKER, DEFAULT_PORT)
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


def resolve_listen(
    specs: Iterable[ListenSpec], docker_gateway: str | None
) -> tuple[list[tuple[str, int]], list[str]]:
    """Concrete (host, port) binds for `specs`, and warnings to show the user.

    `docker` without a bridge is skipped (the broker re-checks and binds once it appears);
    wildcards are kept, since the user wrote them, but every network can then reach the proxy.
    """
    binds: list[tuple[str, int]] = []
    warnings: list[str] = []
    for spec in specs:
        host = spec.host
        if spec.is_docker:
            if not docker_gateway:
                warnings.append(
                    f"listen {spec}: no docker bridge found yet; "
                    "the proxy will listen there once docker's bridge appears"
                )
                continue
            host = docker_gateway
        elif spec.is_wildcard:
            warnings.append(
                f"listen {spec}: the proxy accepts connections from EVERY network this machine "
                "is on, not just local sandboxes; prefer 127.0.0.1 and 'docker'"
            )
        bind = (host, spec.port)
        if spec.port != 0 and bind in binds:
            continue  # e.g. `docker:8765` next to an explicit 172.17.0.1:8765
        binds.append(bind)
    return binds, warnings
