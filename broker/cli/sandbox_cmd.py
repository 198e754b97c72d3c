"""Sandbox keys: `sandbox add|list|rotate|revoke`, and `revoke --all`, `pause`, `resume`.

Through the running broker when there is one (so revocation ends streams in flight at once),
straight in the key store otherwise. Issuing a key also writes the sandbox's Claude Code config
dir (sandboxes.claude_dir), and revoking removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from broker.sandboxes import claude_dir
from broker.sandboxes.key_store import KeyStore, SandboxError
from broker.cli.common import ask_or_none, config_of
from broker.usage.budget import parse_budget
from broker.sandboxes.claude_config import Plan, check_workdir
from broker.config.settings import Config
from broker.common.errors import BrokerError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="issue, list, rotate and revoke sandbox keys")
    s = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    a = s.add_parser("add", help="issue a key for a new sandbox (printed once) and write its Claude Code config")
    a.add_argument("name")
    a.add_argument("--budget", help="tokens per rolling window, e.g. 2M/5h (see `sandbox budget`)")
    add_config_options(a)
    a.set_defaults(func=add)
    b = s.add_parser("budget", help="limit a sandbox's tokens per rolling window: 2M/5h, 500k/1d, or off")
    b.add_argument("name")
    b.add_argument("budget", help="TOKENS/WINDOW (k, M suffixes; m, h, d, w windows), or `off`")
    b.set_defaults(func=budget)
    r = s.add_parser("rotate", help="replace a sandbox's key (the old one stops working)")
    r.add_argument("name")
    add_config_options(r)
    r.set_defaults(func=rotate)
    ls = s.add_parser("list", help="sandboxes with their use")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_)
    from broker.cli import check_cmd  # `sandbox check`: its own module

    check_cmd.register(s)
    add_revoke_options(s.add_parser("revoke", help="revoke one sandbox's key, or --all"))
    add_revoke_options(sub.add_parser("revoke", help="revoke a sandbox's key, or --all"))
    sub.add_parser("pause", help="turn all sandbox access off (keys are kept)").set_defaults(func=pause)
    sub.add_parser("resume", help="turn sandbox access back on").set_defaults(func=resume)


def add_revoke_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true",
                   help="revoke every sandbox key and delete every sandbox's Claude Code dir (its history)")
    p.add_argument("--yes", action="store_true", help="with --all: do not ask (needed without a terminal)")
    p.set_defaults(func=revoke)


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", metavar="DIR", type=check_workdir,
                   help="the sandbox's work folder (where claude starts): Claude Code trusts it and "
                        "its subfolders without asking")
    p.add_argument("--uid", type=int, metavar="UID",
                   help="the user the container runs as, if not you (e.g. 1000 for `node` images): "
                        "the sandbox's Claude Code dir is handed to it")


def host_plan(config: Config) -> Plan:
    """The host login's plan (the running broker's view, else the login store's)."""
    reply = ask_or_none(config, {"op": "status"})
    if reply is not None:
        token = reply["status"].get("token", {})
        return Plan(token.get("subscription_type"), token.get("rate_limit_tier"))
    from broker.config.files import profile_for
    from broker.login.source_setup import build_sources

    for source in build_sources(config, profile_for(config)):
        try:
            login = None if source.unavailable() else source.load()
        except BrokerError:
            continue
        if login is not None:
            return Plan(login.subscription_type, login.rate_limit_tier)
    return Plan()


@contextmanager
def titled(title: str) -> Iterator[None]:
    """The key store's errors ("Sandbox key: bad sandbox name") under a title that says what
    could not be done, also when they come back from the running broker."""
    try:
        yield
    except BrokerError as exc:
        if isinstance(exc, SandboxError) or exc.title == SandboxError.title:
            raise BrokerError(exc.message, title=title) from None
        raise


def _names(config: Config) -> list[str]:
    """The sandboxes there are (the running broker's view, else the key store's)."""
    reply = ask_or_none(config, {"op": "sandbox_list"})
    if reply is not None:
        return [str(r["name"]) for r in reply["sandboxes"]]
    if not config.keystore_path.exists():
        return []
    with KeyStore(config.keystore_path) as store:
        return [s.name for s in store.list()]


def issue(config: Config, name: str, rotate: bool = False, workdir: str | None = None,
          uid: int | None = None) -> str:
    """A new key for `name` (created, or rotated), through the broker if it runs, written into
    the sandbox's Claude Code config dir.

    All or nothing: the dir is read, checked and prepared (whatever the sandbox left there)
    before the key changes, so a failure leaves the old key valid and in the sandbox's login;
    without a broker, the key store's change commits only once the new login is written, and a
    running broker takes back a key the login could not be written with."""
    with titled("Cannot give the sandbox a new key" if rotate else "Cannot create the sandbox"):
        claude_dir.check_uid(uid)  # before the key exists: a refusal leaves nothing behind
        if not rotate and name in _names(config):  # usually the quick start's `--new`, run again
            raise BrokerError(f"sandbox {name!r} already exists: to wire a container to it again, drop `--new` "
                              f"(`inference-broker docker-args {name}`); for a new key, "
                              f"`inference-broker sandbox rotate {name}`", title="Cannot create the sandbox")
        prepared = claude_dir.prepare(config.state_dir, name, host_plan(config), [workdir] if workdir else [], uid)
        reply = ask_or_none(config, {"op": "sandbox_rotate" if rotate else "sandbox_add", "name": name})
        if reply is not None:
            key = reply["key"]
            try:
                prepared.commit(key)
            except BaseException:  # the running broker takes the key back: the old one works again
                with contextlib.suppress(BrokerError):  # the failure to report is the write's
                    ask_or_none(config, {"op": "sandbox_undo", "name": name, "key": key})
                raise
            return key
        with KeyStore(config.keystore_path) as store:
            return store.issue(name, rotate, then=prepared.commit)


def set_budget(config: Config, name: str, text: str) -> str:
    """Set (or with `off` remove) a budget, through the broker if it runs; returns its words."""
    spec = parse_budget(text)
    with titled("Cannot set the budget"):
        reply = ask_or_none(config, {"op": "sandbox_budget", "name": name, "budget": text})
        if reply is None:
            with KeyStore(config.keystore_path) as store:
                store.set_budget(name, spec)
    return spec.words() if spec else "off"


def budget(args: argparse.Namespace) -> int:
    words = set_budget(config_of(args), args.name, args.budget)
    print(f"sandbox {args.name}: budget {words}" + ("" if words == "off" else " tokens per rolling window "
          "(input + cache writes + output)"))
    return 0


def add(args: argparse.Namespace) -> int:
    if args.budget:
        parse_budget(args.budget)  # refuse a bad budget before a key is issued
    config = config_of(args)
    key = issue(config, args.name, workdir=args.workdir, uid=args.uid)
    if args.budget:
        set_budget(config, args.name, args.budget)
    print(key)
    print(f"sandbox {args.name!r} created; its Claude Code config (with this key) is in "
          f"{claude_dir.sandbox_dir(config.state_dir, args.name)}. `inference-broker docker-args "
          f"{args.name}` wires a container to it; other clients take the key as ANTHROPIC_API_KEY.",
          file=sys.stderr)
    return 0


def rotate(args: argparse.Namespace) -> int:
    key = issue(config_of(args), args.name, rotate=True, workdir=args.workdir, uid=args.uid)
    print(key)
    print(f"sandbox {args.name!r} has a new key (its Claude Code picks it up on its next request); "
          "the old one no longer works.", file=sys.stderr)
    return 0


def list_(args: argparse.Namespace) -> int:
    config = config_of(args)
    reply = ask_or_none(config, {"op": "sandbox_list"})
    if reply is not None:
        rows = reply["sandboxes"]
    else:
        with KeyStore(config.keystore_path) as store:
            rows = [s.to_json() for s in store.list()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no sandboxes (`inference-broker sandbox add NAME` issues a key)")
    for r in rows:
        budget = ""
        if r.get("budget"):
            used = f"{r['budget_used']} used of " if r.get("budget_used") is not None else ""
            budget = f", budget {used}{r['budget']}"
        print(f"{r['name']:<24} created {r['created']}  last used {r['last_used'] or 'never':<25} "
              f"{r['requests']} requests, {r['input_tokens']} in / {r['output_tokens']} out tokens{budget}")
    return 0


def _perform(config: Config, action: str, arg: str | None = None) -> bool:
    payload = {"op": "perform", "action": action}
    if arg is not None:
        payload["arg"] = arg
    return ask_or_none(config, payload) is not None


def confirm_revoke_all(config: Config, yes: bool) -> bool:
    """Say what `revoke --all` deletes; on a terminal ask, elsewhere go on only with `--yes`."""
    names = _names(config)
    if not names:
        return True
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    print(f"revoke --all deletes {len(names)} sandbox(es) ({shown}): their keys stop working at once, and "
          f"their Claude Code dirs under {claude_dir.sandbox_dir(config.state_dir, names[0]).parent} "
          "(conversation history, settings) are removed.", file=sys.stderr)
    if yes:
        return True
    if not sys.stdin.isatty():
        print("not without a terminal to ask on: add --yes to go ahead", file=sys.stderr)
        return False
    try:
        answer = input(f"Revoke all {len(names)}? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def revoke(args: argparse.Namespace) -> int:
    config = config_of(args)
    if args.all == bool(args.name):
        print("name one sandbox, or --all", file=sys.stderr)
        return 2
    if args.all and not confirm_revoke_all(config, args.yes):
        print("nothing revoked", file=sys.stderr)
        return 1
    if _perform(config, "revoke_all" if args.all else "revoke_sandbox", None if args.all else args.name):
        print("revoked" + (" every sandbox key" if args.all else f" {args.name}"))
        return 0
    with KeyStore(config.keystore_path) as store:
        if args.all:
            claude_dir.remove_all(config.state_dir)
            print(f"revoked {store.revoke_all()} sandbox key(s)")
        elif store.revoke(args.name):
            claude_dir.remove(config.state_dir, args.name)
            print(f"revoked {args.name}")
        else:
            print(f"no sandbox named {args.name!r}", file=sys.stderr)
            return 1
    return 0


def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    config = config_of(args)
    if not _perform(config, "pause" if paused else "resume"):
        with KeyStore(config.keystore_path) as store:
            store.set_paused(paused)
    print("sandbox access paused" if paused else "sandbox access resumed")
    return 0


def pause(args: argparse.Namespace) -> int:
    return _set_paused(args, True)


def resume(args: argparse.Namespace) -> int:
    return _set_paused(args, False)
