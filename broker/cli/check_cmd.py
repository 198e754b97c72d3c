"""`inference-broker sandbox check NAME [--engine E] [--image IMAGE] [-- RUN OPTIONS]`: why a
container cannot reach the broker.

It starts one throwaway container with the sandbox's flags (and any run options of yours after
`--`, to check those too), as the image's user, and names the step that fails with its fix:
the config dir unreadable by that user, name resolution, the route, nothing listening on that
address, the key refused. The decisions are in sandboxes.engines_check.
"""

from __future__ import annotations

import argparse
import subprocess

from broker.cli.common import ask_or_none, config_of
from broker.cli.docker_args_cmd import bound_addresses
from broker.common.errors import BrokerError
from broker.sandboxes import claude_dir, engine_args, engines, engines_check, wiring

DEFAULT_IMAGE = "busybox"


def register(s: argparse._SubParsersAction) -> None:
    c = s.add_parser("check", help="start a throwaway container with a sandbox's flags and say what stops it "
                                   "reaching the broker")
    c.add_argument("name")
    c.add_argument("--engine", choices=engines.KINDS, help="docker or podman (default: the one here)")
    c.add_argument("--image", default=DEFAULT_IMAGE,
                   help=f"the image your sandbox runs, checked as its user (default: {DEFAULT_IMAGE}); it "
                        "needs sh and curl or wget")
    c.add_argument("options", nargs=argparse.REMAINDER, metavar="-- RUN OPTIONS",
                   help="more `run` options of yours, checked with the sandbox's")
    c.set_defaults(func=check)


def _split_options(args: argparse.Namespace) -> None:
    """argparse hands everything after NAME to the remainder: take --engine/--image back out of
    it, and keep what follows `--` as run options."""
    rest = list(args.options)
    cut = rest.index("--") if "--" in rest else len(rest)
    mine, args.options = rest[:cut], rest[cut + 1:]
    p = argparse.ArgumentParser(prog="inference-broker sandbox check NAME", add_help=False)
    p.add_argument("--engine", choices=engines.KINDS, default=args.engine)
    p.add_argument("--image", default=args.image)
    known = p.parse_args(mine)
    args.engine, args.image = known.engine, known.image


def _say(step: engines_check.Step) -> None:
    print(f"{'ok  ' if step.ok else 'FAIL'} {step.name}: {step.detail}")
    if step.fix:
        print(f"     fix: {step.fix}")


def check(args: argparse.Namespace) -> int:
    from broker.sandboxes import engines_probe

    _split_options(args)
    config = config_of(args)
    if ask_or_none(config, {"op": "status"}) is None:
        _say(engines_check.Step("broker", False, "the broker is not running", "start it with `inference-broker run`"))
        return 1
    if not claude_dir.exists(config.state_dir, args.name):
        _say(engines_check.Step("sandbox", False, f"no sandbox {args.name!r} with a config dir",
                                f"`inference-broker exec {args.name} -- docker run ...` creates it"))
        return 1
    found = engines_probe.detect(args.engine)
    engine = found.engine
    print(f"engine: {engine.describe()}; image {args.image}")
    uid = engines_probe.container_uid(found.program, args.image)
    planned = wiring.plan(config, bound_addresses(config), args.name, engine, podman_gateway=found.podman_gateway,
                          container_uid=uid)
    argv = [found.program, "run", "--rm", *engine_args.run_flags(planned.wiring), *args.options,
            "-e", f"IB_BODY={engines_check.COUNT_BODY}", "--entrypoint", "/bin/sh", args.image,
            "-c", engines_check.SCRIPT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BrokerError("the check container did not finish within 120 s", title="sandbox check") from None
    if "IB uid" not in done.stdout:
        _say(engines_check.Step("container", False, f"the check container did not run: "
                                f"{(done.stderr.strip().splitlines() or ['?'])[-1][:300]}",
                                "check that the image exists and has /bin/sh, or name another with --image"))
        return 1
    symbol = {engines.VIA_DOCKER_BRIDGE: "docker", engines.VIA_PODMAN_BRIDGE: "podman"}.get(engine.via)
    host_address = planned.gateway or planned.wiring.engine.add_host.partition(":")[2]
    steps = engines_check.diagnose(done.stdout, name=args.name, host_address=host_address, port=planned.port,
                                   symbol=symbol)
    for step in steps:
        _say(step)
    if all(s.ok for s in steps):
        print(f"sandbox {args.name!r} reaches the broker from a {engine.kind} container of {args.image}")
        return 0
    return 1
