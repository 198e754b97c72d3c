"""One sandbox's wiring for the engine on this machine: what `docker-args`, `exec`, `sandbox
check` and the tray's "new sandbox" all print or insert. Also makes a sandbox from the tray."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from typing import Sequence

from broker.sandboxes.access import SandboxAccess
from broker.sandboxes import bridges, claude_dir
from broker.sandboxes import engine_args, engines
from broker.sandboxes.claude_config import Plan
from broker.sandboxes.engines import Engine, EngineError
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen

ROOTFUL_DOCKER = Engine(engines.DOCKER, (), rootless=False)


@dataclass(frozen=True)
class Planned:
    wiring: engine_args.Wiring
    engine: Engine
    gateway: str | None  # the bridge address containers use (None: host loopback)
    port: int


def gateway_for(config: Config, engine: Engine, podman_gateway: str | None) -> str | None:
    """The host address the engine's containers reach the broker on. Blocks (it runs `ip`)."""
    if engine.via == engines.VIA_DOCKER_BRIDGE:
        return bridges.bridge_gateway(config.docker_bridge)
    if engine.via == engines.VIA_PODMAN_BRIDGE:
        return podman_gateway or engines.PODMAN_DEFAULT_GATEWAY
    return None


def plan(config: Config, bound: Sequence[str], name: str, engine: Engine = ROOTFUL_DOCKER, *,
         podman_gateway: str | None = None, container_uid: int | None = None, port: int | None = None) -> Planned:
    """Sandbox `name`'s wiring for `engine`. Blocks (it runs `ip`): call it in a thread."""
    where = claude_dir.sandbox_dir(config.state_dir, name)
    specs = [parse_listen(e) for e in config.listen]
    gateway = gateway_for(config, engine, podman_gateway)
    if port is None:
        port = engine_args.sandbox_port(specs, bound, gateway, engine.via)
    flags = engines.flags(engine, port, container_uid=container_uid, podman_gateway=podman_gateway)
    wiring = engine_args.Wiring(engine_args.base_url(port), str(where.resolve()), flags)
    return Planned(wiring, engine, gateway, port)


def run_flags(config: Config, bound: Sequence[str], name: str) -> str:
    """`run` flags for sandbox `name`, as `docker-args NAME` prints them for the engine here
    (rootful docker's when none answers). Blocks (it runs the engine and `ip`): call it in a thread."""
    from broker.sandboxes import engines_probe

    where = claude_dir.sandbox_dir(config.state_dir, name)
    if not where.is_dir():
        raise BrokerError(f"sandbox {name!r} has no Claude Code config dir: `inference-broker docker-args {name} "
                          "--rotate` writes one with a new key", title="Sandbox config")
    try:
        found = engines_probe.detect()
        engine, gateway = found.engine, found.podman_gateway
    except EngineError:
        engine, gateway = ROOTFUL_DOCKER, None
    return shlex.join(engine_args.run_flags(plan(config, bound, name, engine, podman_gateway=gateway).wiring))


async def create(access: SandboxAccess, config: Config, plan: Plan) -> str:
    """A new sandbox with the first free `sandbox-N` name, its key written into its config dir
    (never shown: the flags mount the dir). Returns its name."""
    name = engine_args.free_name(s.name for s in access.sandboxes())
    key = await access.add(name)
    await asyncio.to_thread(claude_dir.write, config.state_dir, name, key, plan)
    return name
