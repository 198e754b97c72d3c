"""Which container engine runs here, and what its containers need to reach the broker.

Decided from what the engine itself reports (`docker info` / `podman info` as JSON), so each
choice is tested against recorded output of real versions:

- **rootful docker** (and Docker Desktop): `--add-host inference.local:host-gateway`. On Linux
  that is docker0's address, which the broker serves (`docker` in `listen`); Docker Desktop's
  reaches host loopback.
- **rootful podman**: `--add-host inference.local:<the podman network's gateway>` (10.88.0.1 by
  default), which the broker serves (`podman` in `listen`). Podman before 4.7 refuses
  `host-gateway`; from 4.7 it accepts it but maps it to the host's default-route address, where
  a broker that serves loopback and bridges does not listen. The bridge gateway works for all.
- **rootless podman**: no host bridge; the container reaches host loopback only through its
  user-mode network. slirp4netns (the default before podman 5):
  `--network slirp4netns:allow_host_loopback=true` and `inference.local` = 10.0.2.2. pasta (the
  default from podman 5): `--network pasta:-T,PORT` forwards the container's own
  127.0.0.1:PORT to the host's, in every pasta version (the gateway-to-loopback mapping changed
  names across versions: `--map-gw`, then `--map-host-loopback`), so `inference.local` =
  127.0.0.1. The mounted dir belongs to you, the container's root: an image user other than
  root gets it through `--userns keep-id:uid=U,gid=U` (you appear as U inside).
- **rootless docker** (RootlessKit): 10.0.2.2 reaches host loopback when the daemon allows it
  (`DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false`); the container's root is you, so
  an image user other than root is run as root (`--user 0:0`) to read the dir.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from broker.common.errors import BrokerError

DOCKER, PODMAN = "docker", "podman"
KINDS = (DOCKER, PODMAN)
SLIRP4NETNS, PASTA = "slirp4netns", "pasta"
PODMAN_DEFAULT_GATEWAY = "10.88.0.1"
SLIRP_HOST = "10.0.2.2"  # slirp4netns's (and RootlessKit's) address for the host
# How a container gets to the broker: a listen entry kind the broker must serve.
VIA_DOCKER_BRIDGE, VIA_PODMAN_BRIDGE, VIA_LOOPBACK = "docker-bridge", "podman-bridge", "loopback"


class EngineError(BrokerError):
    title = "Container engine"


@dataclass(frozen=True)
class Engine:
    kind: str  # docker | podman
    version: tuple[int, ...]
    rootless: bool
    network: str | None = None  # rootless podman's user-mode network: slirp4netns | pasta
    desktop: bool = False  # Docker Desktop: host-gateway reaches host loopback

    @property
    def via(self) -> str:
        if self.rootless or self.desktop:
            return VIA_LOOPBACK
        return VIA_PODMAN_BRIDGE if self.kind == PODMAN else VIA_DOCKER_BRIDGE

    def describe(self) -> str:
        words = [self.kind, ".".join(map(str, self.version)) or "?", "rootless" if self.rootless else "rootful"]
        if self.network:
            words.append(f"({self.network})")
        if self.desktop:
            words.append("(Docker Desktop)")
        return " ".join(words)


@dataclass(frozen=True)
class EngineFlags:
    """What `run` needs beyond the env and mount: where `inference.local` points, and for
    rootless engines the network mode and the user mapping."""

    add_host: str  # NAME:ADDRESS for --add-host
    network: str | None = None
    userns: str | None = None
    user: str | None = None
    note: str | None = None  # something the user must know (a daemon setting), for stderr

    def run_options(self) -> list[str]:
        out = ["--add-host", self.add_host]
        for flag, value in (("--network", self.network), ("--userns", self.userns), ("--user", self.user)):
            if value:
                out += [flag, value]
        return out


def parse_version(text: str) -> tuple[int, ...]:
    """`4.3.1`, `5.3.1-dev`, `20.10.24+dfsg1` -> (4, 3, 1) ...; () when there is none."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def is_podman_cli(version_output: str) -> bool:
    """`docker --version` of podman's docker shim says `podman version 4.3.1`."""
    return bool(re.search(r"^\s*podman version", version_output or "", re.M | re.I))


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise EngineError(f"{what} did not answer JSON: {text[:200]!r}") from None


def parse_info(text: str) -> Engine:
    """An `Engine` from `podman info --format json` or `docker info --format '{{json .}}'`
    (podman's docker shim answers the podman shape)."""
    doc = _load(text, "the engine's info")
    if not isinstance(doc, dict):
        raise EngineError("the engine's info is not a JSON object")
    host = doc.get("host")
    if isinstance(host, dict):
        version = parse_version(str((doc.get("version") or {}).get("Version", "")))
        rootless = bool((host.get("security") or {}).get("rootless"))
        network = None
        if rootless:
            network = str(host.get("rootlessNetworkCmd") or (PASTA if version >= (5,) else SLIRP4NETNS))
        return Engine(PODMAN, version, rootless, network)
    if "ServerVersion" in doc:
        options = [str(o) for o in doc.get("SecurityOptions") or []]
        rootless = any("name=rootless" in o.split(",") for o in options)
        desktop = "docker desktop" in str(doc.get("OperatingSystem", "")).lower()
        return Engine(DOCKER, parse_version(str(doc["ServerVersion"])), rootless, desktop=desktop)
    raise EngineError("the engine's info has neither podman's `host` nor docker's `ServerVersion`")


def parse_network_gateway(text: str) -> str | None:
    """The first IPv4 gateway of `podman network inspect podman --format json`."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    for net in doc if isinstance(doc, list) else [doc]:
        for subnet in (net.get("subnets") or []) if isinstance(net, dict) else []:
            gateway = subnet.get("gateway") if isinstance(subnet, dict) else None
            if isinstance(gateway, str) and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gateway):
                return gateway
    return None


def flags(engine: Engine, port: int, *, container_uid: int | None = None, alias: str = "inference.local",
          podman_gateway: str | None = None) -> EngineFlags:
    """The run options for `engine`. `container_uid` is the user the image runs as, when known
    (rootless engines map it; rootful ones get the dir handed over on the host instead)."""
    if not engine.rootless:
        if engine.kind == PODMAN:
            return EngineFlags(f"{alias}:{podman_gateway or PODMAN_DEFAULT_GATEWAY}")
        return EngineFlags(f"{alias}:host-gateway")
    if engine.kind == PODMAN:
        if engine.network == PASTA:
            network, address = f"pasta:-T,{port}", "127.0.0.1"
        else:
            network, address = f"{SLIRP4NETNS}:allow_host_loopback=true", SLIRP_HOST
        if container_uid is None:
            userns: str | None = "keep-id"  # you, by your own uid, whatever the image's user
        else:
            userns = None if container_uid == 0 else f"keep-id:uid={container_uid},gid={container_uid}"
        return EngineFlags(f"{alias}:{address}", network=network, userns=userns)
    return EngineFlags(
        f"{alias}:{SLIRP_HOST}", user=None if container_uid == 0 else "0:0",
        note="rootless docker reaches the broker on host loopback only if its daemon allows it: start "
             "it with DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false "
             "(e.g. in ~/.config/systemd/user/docker.service.d/override.conf)")


def chown_on_host(engine: Engine) -> bool:
    """Whether the image's user gets the dir by a chown on the host (rootful engines), rather
    than by a user mapping (rootless: a host chown would give it to a stranger)."""
    return not engine.rootless


def parse_user(spec: str) -> tuple[str, str]:
    """`USER` of an image or `--user`: (user, group) as written; "" for none."""
    user, _, group = (spec or "").partition(":")
    return user.strip(), group.strip()


def uid_from_passwd(name: str, passwd: str) -> int | None:
    """`name`'s uid in an /etc/passwd text, or None."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def numeric_uid(user: str) -> int | None:
    """0 for no user (the image runs as root), the number for a numeric user, None for a name."""
    if not user or user == "root":
        return 0
    return int(user) if user.isdigit() else None
