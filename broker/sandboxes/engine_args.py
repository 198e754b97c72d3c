"""What a sandbox needs to reach the broker, in the formats people paste it into.

Every format carries the same facts: `inference.local` resolves to the host gateway, the base
URL, and Claude Code's config dir: the sandbox's own dir from the broker's state dir (holding
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
    """`docker run` flags (podman takes them too, except `host-gateway` in podman 4)."""
    return ["--add-host", ADD_HOST, "-e", f"{BASE_URL_VAR}={w.base_url}",
            "-e", f"{CONFIG_DIR_VAR}={CONTAINER_CONFIG_DIR}", "--mount", _mount(w)]


def env_file(w: Wiring) -> str:
    """For a sandbox that shares the host's files (a network namespace): the host path itself."""
    return f"{BASE_URL_VAR}={w.base_url}\n{CONFIG_DIR_VAR}={w.config_dir}\n"


def compose_snippet(w: Wiring, service: str = "sandbox") -> str:
    """A compose `services:` entry; `$` is doubled because compose interpolates values."""

    entry: dict[str, Any] = {
        "extra_hosts": [ADD_HOST],
        "environment": {BASE_URL_VAR: w.base_url.replace("$", "$$"), CONFIG_DIR_VAR: CONTAINER_CONFIG_DIR},
        "volumes": [{"type": "bind", "source": w.config_dir.replace("$", "$$"), "target": CONTAINER_CONFIG_DIR}],
    }
    return yaml.safe_dump({"services": {service: entry}}, sort_keys=False, default_flow_style=False)


def devcontainer_fragment(w: Wiring) -> str:
    """Keys to merge into devcontainer.json."""
    doc = {
        "runArgs": [f"--add-host={ADD_HOST}"],
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
    specs: Sequence[ListenSpec], bound: Sequence[str] = (), docker_gateway: str | None = None
) -> int:
    """The port a container reaches the broker on.

    Preference: the `docker` entry (the Linux engine's way in), a wildcard, an entry on the
    gateway address itself, then loopback (Docker Desktop's `host-gateway` reaches it). A
    configured port 0 is only known from a running broker's `bound` addresses.
    """

    def rank(spec: ListenSpec) -> int:
        if spec.is_docker:
            return 0
        if spec.is_wildcard:
            return 1
        if docker_gateway and spec.host == docker_gateway:
            return 2
        if spec.is_loopback:
            return 3
        return 4

    ordered = sorted(specs, key=rank)
    if not ordered:
        raise ConfigError("listen is empty: the broker has no address a container could reach")
    for spec in ordered:
        if spec.port:
            return spec.port
        host = docker_gateway if spec.is_docker else spec.host
        port = _bound_port(host, bound) if host else None
        if port:
            return port
    raise ConfigError(
        "the broker's listen ports are chosen at start (port 0) and no running broker "
        "reports them: start the broker, or pass --port"
    )


def reaches_containers(specs: Sequence[ListenSpec]) -> bool:
    """Whether a Linux docker engine's containers could reach any entry (loopback can't)."""
    return any(not s.is_loopback for s in specs)
