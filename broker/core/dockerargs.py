"""What a container needs to reach the broker, in the formats people paste it into.

Every format carries the same three facts: `inference.local` resolves to the host gateway,
the base URL, and the sandbox key (or, when the key is not at hand, a reference to the
caller's `ANTHROPIC_API_KEY`, because only a hash of an issued key is kept).
"""

from __future__ import annotations

import json
import shlex
from typing import Iterable, Sequence

import yaml

from broker.core.errors import ConfigError
from broker.core.listen import ListenSpec, format_hostport

HOST_ALIAS = "inference.local"
ADD_HOST = f"{HOST_ALIAS}:host-gateway"
BASE_URL_VAR = "ANTHROPIC_BASE_URL"
KEY_VAR = "ANTHROPIC_API_KEY"
FORMATS = ("run", "env", "compose", "devcontainer")


def base_url(port: int, host: str = HOST_ALIAS) -> str:
    return f"http://{format_hostport(host, port)}"


def run_flags(base_url: str, key: str | None) -> list[str]:
    """`docker run` flags; without a key, `-e ANTHROPIC_API_KEY` passes the caller's own."""
    return [
        "--add-host", ADD_HOST,
        "-e", f"{BASE_URL_VAR}={base_url}",
        "-e", KEY_VAR if key is None else f"{KEY_VAR}={key}",
    ]


def run_line(base_url: str, key: str | None) -> str:
    return shlex.join(run_flags(base_url, key))


def env_file(base_url: str, key: str | None) -> str:
    """A `docker run --env-file` file; a bare name there is taken from the caller's env."""
    lines = [f"{BASE_URL_VAR}={base_url}", KEY_VAR if key is None else f"{KEY_VAR}={key}"]
    return "\n".join(lines) + "\n"


def compose_snippet(base_url: str, key: str | None, service: str = "sandbox") -> str:
    """A compose `services:` entry; `$` is doubled because compose interpolates values."""
    key_value = f"${{{KEY_VAR}}}" if key is None else key.replace("$", "$$")
    doc = {
        "services": {
            service: {
                "extra_hosts": [ADD_HOST],
                "environment": {BASE_URL_VAR: base_url.replace("$", "$$"), KEY_VAR: key_value},
            }
        }
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def devcontainer_fragment(base_url: str, key: str | None) -> str:
    """Keys to merge into devcontainer.json; without a key, `${localEnv:...}` reads the host's."""
    doc = {
        "runArgs": [f"--add-host={ADD_HOST}"],
        "containerEnv": {
            BASE_URL_VAR: base_url,
            KEY_VAR: f"${{localEnv:{KEY_VAR}}}" if key is None else key,
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def render(fmt: str, base_url: str, key: str | None, name: str = "sandbox") -> str:
    """The output of `docker-args --format FMT`, newline-terminated."""
    if fmt == "run":
        return run_line(base_url, key) + "\n"
    if fmt == "env":
        return env_file(base_url, key)
    if fmt == "compose":
        return compose_snippet(base_url, key, service=name)
    if fmt == "devcontainer":
        return devcontainer_fragment(base_url, key)
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
