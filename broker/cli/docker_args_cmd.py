"""`inference-broker docker-args NAME`: the flags that wire a container to the broker.

`--new` issues a key (creating the sandbox), `--rotate` replaces it; either writes the key into
the sandbox's Claude Code config dir, which the printed flags mount. The output itself holds
no secret, so `docker-args NAME` prints it again for an existing sandbox. Keys go through a
running broker when there is one (so a rotation takes effect at once), else straight into the
key store, as `sandbox add` does. The flags fit the engine here (`--engine`, else detected:
see sandboxes.engines); `inference-broker exec` runs a container with them and checks first,
this command is for compose files, devcontainers and scripts, so it only warns.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from broker.sandboxes import claude_dir, engine_args, engines, wiring
from broker.sandboxes.key_store import KeyStore
from broker.cli.common import ask_or_none, config_of
from broker.cli.sandbox_cmd import add_config_options, issue
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen
from broker.sandboxes.engines import Engine, EngineError

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
    p.add_argument("--engine", choices=engines.KINDS,
                   help="the engine the flags are for (default: the one here; `docker` being podman's shim "
                        "counts as podman)")
    add_config_options(p)
    p.set_defaults(func=run)


def bound_addresses(config: Config) -> list[str]:
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


def _engine(requested: str | None, fmt: str) -> tuple[Engine, str | None]:
    """The engine to print flags for, and rootful podman's gateway. With no --engine and no
    engine answering, rootful docker's flags (with a warning): the file may be for elsewhere."""
    if fmt == "env":
        return wiring.ROOTFUL_DOCKER, None  # no engine: a namespace shares the host's files
    from broker.sandboxes import engines_probe

    try:
        found = engines_probe.detect(requested)
    except EngineError as exc:
        if requested:
            raise
        print(f"warning: {exc.message}; printing rootful docker's flags (pass --engine to choose)",
              file=sys.stderr)
        return wiring.ROOTFUL_DOCKER, None
    return found.engine, found.podman_gateway


def broker_warning(config: Config, planned: wiring.Planned) -> str | None:
    """Why a container with these flags would not reach the broker now, or None."""
    if ask_or_none(config, {"op": "status"}) is None:
        return "the broker is not running: start it with `inference-broker run`"
    specs = [parse_listen(e) for e in config.listen]
    why = engine_args.unreachable_reason(planned.engine.via, planned.gateway, bound_addresses(config), specs)
    return f"{why}; containers of this engine cannot reach it" if why else None


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    engine, podman_gateway = _engine(args.engine, args.format)
    host_uid = args.uid if engines.chown_on_host(engine) else None  # rootless: mapped, never chowned

    if args.new or args.rotate:
        issue(config, args.name, rotate=args.rotate, workdir=args.workdir, uid=host_uid)
        print(f"sandbox {args.name!r} " + ("has a new key; the old one stops working now."
                                            if args.rotate else "created."), file=sys.stderr)
    elif not claude_dir.exists(config.state_dir, args.name):
        known = _known(config, args.name)
        raise BrokerError(
            f"sandbox {args.name!r} has no Claude Code config dir yet: " +
            (f"`docker-args {args.name} --rotate` writes one with a new key" if known
             else f"`docker-args {args.name} --new` creates the sandbox"), title="Sandbox config")
    elif args.workdir or (args.uid is not None and host_uid is not None):
        raise BrokerError("--uid and --workdir apply with --new or --rotate", title="Sandbox config")

    planned = wiring.plan(config, bound_addresses(config), args.name, engine, podman_gateway=podman_gateway,
                          container_uid=args.uid, port=args.port)
    where = claude_dir.sandbox_dir(config.state_dir, args.name)
    if args.format == "run" and any(ch.isspace() for ch in str(where)):
        print(f"note: {where} has a space, which a shell's $(...) splits apart: use `inference-broker exec "
              f"{args.name} -- docker run ...` instead, or --format compose", file=sys.stderr)
    if args.format != "env":
        warning = broker_warning(config, planned)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        if planned.wiring.engine.note:
            print(f"note: {planned.wiring.engine.note}", file=sys.stderr)
    sys.stdout.write(engine_args.render(args.format, planned.wiring, name=args.name))
    return 0
