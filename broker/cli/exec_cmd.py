"""`inference-broker exec NAME -- docker run [options] IMAGE [command]`: run a container wired
to the broker, or none at all.

In the manner of `aws-vault exec`: the sandbox's wiring goes into the engine's own argv right
after `run` (no shell in between, so paths with spaces stay whole), the sandbox is created on
first use and reused after, its config dir is made readable by the user the image runs as (looked
up in the image), and only when everything is in place does this process become the engine
(`execvp`: signals, exit status and the terminal pass straight through). Anything wrong (the
broker down, the sandbox revoked, the engine unreachable, a way in the broker does not serve)
stops it before a container exists, with the command that fixes it.
"""

from __future__ import annotations

import argparse
import os
import sys

from broker.cli.common import ask_or_none, config_of
from broker.cli.docker_args_cmd import bound_addresses
from broker.cli.sandbox_cmd import host_plan, issue
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen
from broker.config.settings import Config
from broker.sandboxes import claude_dir, engine_args, engines, engines_argv, wiring
from broker.sandboxes.claude_config import check_workdir
from broker.sandboxes.key_store import KeyStore
from broker.sandboxes.keys import hash_key


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "exec",
        help="run `docker run` / `podman run` with a sandbox wired in (created on first use)",
        description="Run a container wired to the broker as sandbox NAME: `inference-broker exec NAME -- "
        "docker run --rm -it IMAGE claude`. The sandbox is created on first use; nothing starts when "
        "the broker, the sandbox or the engine is not ready.",
    )
    p.add_argument("name", help="sandbox name")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- ENGINE run ...",
                   help="the engine's own command line: docker run ... or podman run ...")
    p.set_defaults(func=run)


class ExecRefused(BrokerError):
    title = "Nothing started"


def _key_state(config: Config, name: str) -> str:
    """`ok`, `new` (no trace of it), `revoked` (a dir whose key the broker no longer accepts),
    or `no-dir` (a key, but its config dir is gone)."""
    key = claude_dir.read_key(config.state_dir, name)
    hashes: dict[str, str] = {}
    revoked = None
    if config.keystore_path.exists():
        with KeyStore(config.keystore_path) as store:
            hashes, revoked = store.hashes(), store.revoked_at(name)
    if key is None:
        return "no-dir" if name in hashes else "revoked" if revoked is not None else "new"
    return "ok" if hashes.get(name) == hash_key(key) else "revoked"


def _owner_wanted(engine: engines.Engine, uid: int) -> int | None:
    """The uid the dir must belong to on the host for this container, or None (as it is)."""
    if not engines.chown_on_host(engine) or uid == 0 or uid == os.geteuid():
        return None  # rootless: mapped instead; root reads anything; already yours
    return uid


def _prepare(config: Config, name: str, engine: engines.Engine, uid: int, workdir: str | None) -> None:
    state = _key_state(config, name)
    owner = _owner_wanted(engine, uid)
    if state == "revoked" and not claude_dir.sandbox_dir(config.state_dir, name).exists():
        raise ExecRefused(f"sandbox {name!r} was revoked (its key and history are gone). To start it again "
                          f"with a new key: `inference-broker sandbox add {name}`, then run this again")
    if state == "revoked":
        raise ExecRefused(f"sandbox {name!r} was revoked: the key in its config dir is no longer accepted. "
                          f"`inference-broker docker-args {name} --rotate` gives it a new one, or "
                          f"`inference-broker sandbox revoke {name}` removes what is left")
    if state == "no-dir":
        raise ExecRefused(f"sandbox {name!r} has a key but no Claude Code config dir: `inference-broker "
                          f"docker-args {name} --rotate` writes one with a new key")
    if state == "new":
        trusted = None
        if workdir:
            try:
                trusted = check_workdir(workdir)
            except BrokerError:
                trusted = None  # a relative -w: Claude Code asks about it once, as usual
        issue(config, name, workdir=trusted, uid=owner)
        print(f"inference-broker: sandbox {name!r} created", file=sys.stderr)
        return
    where = claude_dir.sandbox_dir(config.state_dir, name)
    if owner is not None and where.stat().st_uid != owner:
        key = claude_dir.read_key(config.state_dir, name)
        assert key is not None
        claude_dir.write(config.state_dir, name, key, host_plan(config), [], owner)  # same key, new owner


def command_line(config: Config, name: str, argv: list[str]) -> list[str]:
    """The engine command line to run, after every check; raises with the fix otherwise."""
    from broker.sandboxes import engines_probe

    parsed = engines_argv.parse(argv)
    if ask_or_none(config, {"op": "status"}) is None:
        raise ExecRefused("the broker is not running: start it with `inference-broker run`")
    found = engines_probe.detect(program=parsed.program)
    engine = found.engine
    uid = engines_probe.container_uid(parsed.program, parsed.image, parsed.chosen.get("user"))
    bound = bound_addresses(config)
    specs = [parse_listen(e) for e in config.listen]
    gateway = wiring.gateway_for(config, engine, found.podman_gateway)
    why = engine_args.unreachable_reason(engine.via, gateway, bound, specs)
    if why:
        raise ExecRefused(f"{why}; a container of this engine ({engine.describe()}) would not reach it")
    _prepare(config, name, engine, uid, parsed.chosen.get("workdir"))
    planned = wiring.plan(config, bound, name, engine, podman_gateway=found.podman_gateway, container_uid=uid)
    flags = planned.wiring.engine
    mine = engines.EngineFlags(flags.add_host, *(None if key in parsed.chosen else value for key, value in (
        ("network", flags.network), ("userns", flags.userns), ("user", flags.user))))
    for key in ("network", "userns"):
        if key in parsed.chosen and getattr(flags, key):
            print(f"inference-broker: note: your --{key} {parsed.chosen[key]} replaces --{key} "
                  f"{getattr(flags, key)}, which this engine needs to reach the broker; "
                  f"`inference-broker sandbox check {name}` tells whether it still does", file=sys.stderr)
    if flags.note:
        print(f"inference-broker: note: {flags.note}", file=sys.stderr)
    wired = engine_args.Wiring(planned.wiring.base_url, planned.wiring.config_dir, mine)
    return parsed.with_options(engine_args.run_flags(wired))


def run(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    config = config_of(args)
    line = command_line(config, args.name, argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(line[0], line)
    except OSError as exc:
        raise ExecRefused(f"cannot run {line[0]!r}: {exc.strerror or exc}") from None
    return 127  # not reached
