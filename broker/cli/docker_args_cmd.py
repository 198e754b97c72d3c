"""`inference-broker docker-args NAME`: the flags that wire a container to the broker.

`--new` issues a key (creating the sandbox), `--rotate` replaces it; either writes the key into
the sandbox's Claude Code config dir, which the printed flags mount. The output itself holds
no secret, so `docker-args NAME` prints it again for an existing sandbox. Keys go through a
running broker when there is one (so a rotation takes effect at once), else straight into the
key store, as `sandbox add` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from broker.sandboxes import bridges, claude_dir
from broker.sandboxes.key_store import KeyStore
from broker.cli.common import config_of
from broker.cli.sandbox_cmd import add_config_options, issue
from broker.sandboxes import engine_args
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "docker-args",
        help="print docker flags that connect a container to the broker",
        description="Print the `docker run` flags (or an env file, compose or devcontainer "
        "snippet) that let a container reach the broker as inference.local.",
    )
    p.add_argument("name", help="sandbox name")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--new", action="store_true", help="create sandbox NAME (its key goes into its Claude Code dir, never to the screen)")
    key.add_argument("--rotate", action="store_true", help="give sandbox NAME a new key (the old one stops working)")
    p.add_argument("--format", choices=engine_args.FORMATS, default="run", help="output format (default: run)")
    p.add_argument("--port", type=int, help="the port containers reach the broker on (default: from the config)")
    add_config_options(p)
    p.set_defaults(func=run)


def _bound(config: Config) -> list[str]:
    """The running broker's real addresses (needed when listen uses port 0)."""
    try:
        doc = json.loads((config.state_dir / "listen.json").read_text())
        return [str(a) for a in doc.get("listen", [])]
    except (OSError, ValueError, AttributeError):
        return []


def _known(config: Config, name: str) -> bool | None:
    if not config.keystore_path.exists():
        return None
    with KeyStore(config.keystore_path) as store:
        return any(s.name == name for s in store.list())


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    specs = [parse_listen(e) for e in config.listen]
    if args.port is not None:
        port = args.port
    else:
        gateway = bridges.bridge_gateway(config.docker_bridge)
        port = engine_args.sandbox_port(specs, _bound(config), gateway)
    if sys.platform.startswith("linux") and not engine_args.reaches_containers(specs):
        print("warning: the broker listens on loopback only, which containers of the Linux docker "
              "engine cannot reach; add `docker:PORT` to `listen` (Docker Desktop is fine as is).",
              file=sys.stderr)

    if args.new or args.rotate:
        issue(config, args.name, rotate=args.rotate, workdir=args.workdir, uid=args.uid)
        print(f"sandbox {args.name!r} " + ("has a new key; the old one stops working now."
                                            if args.rotate else "created."), file=sys.stderr)
    elif not claude_dir.exists(config.state_dir, args.name):
        known = _known(config, args.name)
        raise BrokerError(
            f"sandbox {args.name!r} has no Claude Code config dir yet: " +
            (f"`docker-args {args.name} --rotate` writes one with a new key" if known
             else f"`docker-args {args.name} --new` creates the sandbox"), title="Sandbox config")
    elif args.uid is not None or args.workdir:
        raise BrokerError("--uid and --workdir apply with --new or --rotate", title="Sandbox config")

    where = claude_dir.sandbox_dir(config.state_dir, args.name)
    if args.format == "run" and any(ch.isspace() for ch in str(where)):
        print(f"note: {where} has a space, which a shell's $(...) splits apart: paste the printed line "
              "into your command instead, or use --format compose", file=sys.stderr)
    wiring = engine_args.Wiring(engine_args.base_url(port), str(where.resolve()))
    sys.stdout.write(engine_args.render(args.format, wiring, name=args.name))
    return 0
