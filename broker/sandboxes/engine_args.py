"""What a sandbox needs to reach the broker, in the formats people paste it into.

Every format carries the same facts: where `inference.local` points (and, for rootless engines,
the network mode and user mapping that make it work: see sandboxes.engines), the base URL, and
Claude Code's config dir: the sandbox's own dir from the broker's state dir (holding
its key in a stand-in login, see sandboxes.claude_config), mounted at `CONTAINER_CONFIG_DIR` with
`CLAUDE_CONFIG_DIR` pointing there. No format carries the key itself, so none is a secret.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import yaml

from broker.common.errors import ConfigError
from broker.config.listen import ListenSpec, format_hostport
from broker.sandboxes.engines import VIA_DOCKER_BRIDGE, VIA_LOOPBACK, VIA_PODMAN_BRIDGE, EngineFlags

HOST_ALIAS = "inference.local"
ADD_HOST = f"{HOST_ALIAS}:host-gateway"
BASE_URL_VAR = "ANTHROPIC_BASE_URL"
CONFIG_DIR_VAR = "CLAUDE_CONFIG_DIR"
CONTAINER_CONFIG_DIR = "/opt/inference-broker/claude"
FORMATS = ("run", "env", "compose", "devcontainer")


@dataclass(frozen=True)
class Wiring:
    """One sandbox's wiring: where the broker is, and where its config dir is on the host."""

    base_url: str
    config_dir: str  # host path of the sandbox's Claude Code dir
    engine: EngineFlags = EngineFlags(ADD_HOST)  # rootful docker's unless told otherwise


def base_url(port: int, host: str = HOST_ALIAS) -> str:
    return f"http://{format_hostport(host, port)}"


def free_name(taken: Iterable[str], prefix: str = "sandbox") -> str:
    """The first `PREFIX-N` not in `taken`: a name for a sandbox made with one click."""
    used = set(taken)
    n = 1
    while f"{prefix}-{n}" in used:
        n += 1
    return f"{prefix}-{n}"


def _mount(w: Wiring) -> str:
    if "," in w.config_dir or "=" in w.config_dir:
        raise ConfigError(f"the sandbox dir {w.config_dir!r} has a ',' or '=' that docker's --mount "
                          "cannot carry: choose a state_dir without them")
    return f"type=bind,src={w.config_dir},dst={CONTAINER_CONFIG_DIR}"


def run_flags(w: Wiring) -> list[str]:
    """`docker run` / `podman run` options, one argv word each."""
    return [*w.engine.run_options(), "-e", f"{BASE_URL_VAR}={w.base_url}",
            "-e", f"{CONFIG_DIR_VAR}={CONTAINER_CONFIG_DIR}", "--mount", _mount(w)]


def env_file(w: Wiring) -> str:
    """For a sandbox that shares the host's files (a network namespace): the host path itself."""
    return f"{BASE_URL_VAR}={w.base_url}\n{CONFIG_DIR_VAR}={w.config_dir}\n"


def compose_snippet(w: Wiring, service: str = "sandbox") -> str:
    """A compose `services:` entry; `$` is doubled because compose interpolates values."""

    e = w.engine
    entry: dict[str, Any] = {
        "extra_hosts": [e.add_host],
        "environment": {BASE_URL_VAR: w.base_url.replace("$", "$$"), CONFIG_DIR_VAR: CONTAINER_CONFIG_DIR},
        "volumes": [{"type": "bind", "source": w.config_dir.replace("$", "$$"), "target": CONTAINER_CONFIG_DIR}],
    }
    for key, value in (("network_mode", e.network), ("userns_mode", e.userns), ("user", e.user)):
        if value:
            entry[key] = value
    return yaml.safe_dump({"services": {service: entry}}, sort_keys=False, default_flow_style=False)


def devcontainer_fragment(w: Wiring) -> str:
    """Keys to merge into devcontainer.json."""
    doc = {
        "runArgs": [f"{flag}={value}" for flag, value in zip(*[iter(w.engine.run_options())] * 2)],
        "containerEnv": {BASE_URL_VAR: w.base_url, CONFIG_DIR_VAR: CONTAINER_CONFIG_DIR},
        "mounts": [{"type": "bind", "source": w.config_dir, "target": CONTAINER_CONFIG_DIR}],
    }
    return json.dumps(doc, indent=2) + "\n"


def render(fmt: str, w: Wiring, name: str = "sandbox") -> str:
    """The output of `docker-args --format FMT`, newline-terminated."""
    if fmt == "run":
        return shlex.join(run_flags(w)) + "\n"
    if fmt == "env":
        return env_file(w)
    if fmt == "compose":
        return compose_snippet(w, service=name)
    if fmt == "devcontainer":
        return devcontainer_fragment(w)
    raise ValueError(f"unknown format {fmt!r}")


def _bound_port(host: str, bound: Iterable[str]) -> int | None:
    for entry in bound:
        h, _, p = entry.rpartition(":")
        if h.strip("[]") == host and p.isdigit():
            return int(p)
    return None


def sandbox_port(
    specs: Sequence[ListenSpec], bound: Sequence[str] = (), gateway: str | None = None,
    via: str = VIA_DOCKER_BRIDGE,
) -> int:
    """The port a container reaches the broker on, coming `via` a bridge or host loopback.

    Preference: the entry made for that way in (`docker`/`podman`, or loopback for rootless
    engines and Docker Desktop), a wildcard, an entry on the bridge's address itself, then the
    rest. A configured port 0 is only known from a running broker's `bound` addresses.
    """
    symbol = {VIA_DOCKER_BRIDGE: "docker", VIA_PODMAN_BRIDGE: "podman"}.get(via)

    def rank(spec: ListenSpec) -> int:
        if (spec.host == symbol) if symbol else spec.is_loopback:
            return 0
        if spec.is_wildcard:
            return 1
        if gateway and spec.host == gateway:
            return 2
        if spec.is_loopback:
            return 3  # Docker Desktop's host-gateway reaches loopback
        return 4

    ordered = sorted(specs, key=rank)
    if not ordered:
        raise ConfigError("listen is empty: the broker has no address a container could reach")
    for spec in ordered:
        if spec.port:
            return spec.port
        host = gateway if spec.is_bridge else spec.host
        port = _bound_port(host, bound) if host else None
        if port:
            return port
    raise ConfigError(
        "the broker's listen ports are chosen at start (port 0) and no running broker "
        "reports them: start the broker, or pass --port"
    )


def reaches_containers(specs: Sequence[ListenSpec], via: str = VIA_DOCKER_BRIDGE,
                       gateway: str | None = None) -> bool:
    """Whether the config serves the way in containers of this engine use."""
    if via == VIA_LOOPBACK:
        return any(s.is_loopback or s.is_wildcard for s in specs)
    symbol = "docker" if via == VIA_DOCKER_BRIDGE else "podman"
    return any(s.host == symbol or s.is_wildcard or (gateway and s.host == gateway) for s in specs)


def unreachable_reason(via: str, gateway: str | None, bound: Sequence[str], specs: Sequence[ListenSpec]) -> str | None:
    """Why a running broker (listening on `bound`) cannot be reached `via` this way, or None."""
    hosts = {b.rpartition(":")[0].strip("[]") for b in bound}
    if via == VIA_LOOPBACK:
        return None if hosts & {"127.0.0.1", "0.0.0.0", "::"} else "the broker does not listen on 127.0.0.1"
    if hosts & {"0.0.0.0", "::"} or (gateway and gateway in hosts):
        return None
    symbol = "docker" if via == VIA_DOCKER_BRIDGE else "podman"
    if via == VIA_PODMAN_BRIDGE and any(s.host == symbol for s in specs):
        return None  # podman makes its bridge with the container: the broker binds it then
    where = f" ({gateway})" if gateway else ""
    if not any(s.host == symbol or s.is_wildcard or (gateway and s.host == gateway) for s in specs):
        return (f"the broker does not listen on the {symbol} bridge{where}: add `{symbol}:PORT` to `listen` "
                "in the config, or remove `listen` to serve every bridge")
    return f"the broker is not listening on the {symbol} bridge{where} yet (is the bridge up?)"
