"""`inference-broker docker-args NAME`: the flags that wire a container to the broker.

Only a hash of a sandbox key is kept, so an existing key cannot be printed again: `--new`
issues one (creating the sandbox), `--rotate` replaces it, and otherwise the output refers
to the caller's own `ANTHROPIC_API_KEY`. Keys go through a running broker when there is one
(so a rotation takes effect at once), else straight into the key store, as `sandbox add` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from broker.adapters import docker_net
from broker.adapters.keystore import KeyStore
from broker.cli.common import config_of
from broker.cli.sandbox_cmd import issue
from broker.core import dockerargs
from broker.core.config import Config
from broker.core.listen import parse_listen

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
    key.add_argument("--new", action="store_true", help="create sandbox NAME and print its new key")
    key.add_argument("--rotate", action="store_true", help="give sandbox NAME a new key (the old one stops working)")
    p.add_argument("--format", choices=dockerargs.FORMATS, default="run", help="output format (default: run)")
    p.add_argument("--port", type=int, help="the port containers reach the broker on (default: from the config)")
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
        gateway = docker_net.bridge_gateway(config.docker_bridge)
        port = dockerargs.sandbox_port(specs, _bound(config), gateway)
    if sys.platform.startswith("linux") and not dockerargs.reaches_containers(specs):
        print("warning: the broker listens on loopback only, which containers of the Linux docker "
              "engine cannot reach; add `docker:PORT` to `listen` (Docker Desktop is fine as is).",
              file=sys.stderr)

    key: str | None = None
    if args.new or args.rotate:
        key = issue(config, args.name, rotate=args.rotate)
        if args.rotate:
            print(f"sandbox {args.name!r} has a new key; the old one stops working now.", file=sys.stderr)
        else:
            print(f"sandbox {args.name!r} created; its key is shown only this once.", file=sys.stderr)
        if args.format in ("compose", "devcontainer"):
            print("this snippet holds a secret key: keep it out of version control.", file=sys.stderr)
    else:
        hint = (f"ANTHROPIC_API_KEY comes from your environment. Only a hash of each key is kept, so "
                f"an old key cannot be shown: `--new` creates sandbox {args.name!r} with a key, "
                f"`--rotate` gives it a new one.")
        if _known(config, args.name) is False:
            hint += f" (There is no sandbox {args.name!r} yet.)"
        print(hint, file=sys.stderr)

    url = dockerargs.base_url(port)
    sys.stdout.write(dockerargs.render(args.format, url, key, name=args.name))
    return 0
