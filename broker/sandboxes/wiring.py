"""A sandbox made and wired from the tray: the same key, config dir and flags that
`inference-broker docker-args NAME --new` gives on the command line."""

from __future__ import annotations

import asyncio
import shlex
from typing import Sequence

from broker.sandboxes.access import SandboxAccess
from broker.sandboxes import bridges, claude_dir
from broker.sandboxes import engine_args
from broker.sandboxes.claude_config import Plan
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen


def run_flags(config: Config, bound: Sequence[str], name: str) -> str:
    """`docker run` flags for sandbox `name`, as `docker-args NAME` prints them. Blocks (it
    runs `ip` to find the docker bridge): call it in a thread."""
    where = claude_dir.sandbox_dir(config.state_dir, name)
    if not where.is_dir():
        raise BrokerError(f"sandbox {name!r} has no Claude Code config dir: `inference-broker docker-args {name} "
                          "--rotate` writes one with a new key", title="Sandbox config")
    specs = [parse_listen(e) for e in config.listen]
    port = engine_args.sandbox_port(specs, bound, bridges.bridge_gateway(config.docker_bridge))
    wiring = engine_args.Wiring(engine_args.base_url(port), str(where.resolve()))
    return shlex.join(engine_args.run_flags(wiring))


async def create(access: SandboxAccess, config: Config, plan: Plan) -> str:
    """A new sandbox with the first free `sandbox-N` name, its key written into its config dir
    (never shown: the flags mount the dir). Returns its name."""
    name = engine_args.free_name(s.name for s in access.sandboxes())
    key = await access.add(name)
    await asyncio.to_thread(claude_dir.write, config.state_dir, name, key, plan)
    return name
