"""`doctor`'s checks of what a first run trips over: a port another program holds, no address
a container can reach, a sandbox dir its container's user cannot read, a stand-in login that
shows an old plan. (The login, modes and the running broker are
`doctor_checks`, which runs these too.)
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import sys
from pathlib import Path

from broker.cli.doctor_findings import OK, PROBLEM, WARN, Finding
from broker.cli.image_user import ImageLookupError, image_uid
from broker.config.listen import DEFAULT_PORT, ListenSpec, format_hostport, parse_listen
from broker.config.settings import Config
from broker.sandboxes import claude_dir
from broker.sandboxes.claude_config import CONFIG_FILE, CREDENTIALS_FILE, Plan, stand_in_plan


def config_words(config: Config) -> str:
    """Where the config is (or would be) read from, for the fixes that say "edit it"."""
    return str(config.path) if config.path else "the config file"


def suggested_port(specs: list[ListenSpec]) -> int:
    """The port the user already chose (the README's 8765 by default), for a `docker:PORT` hint."""
    return next((s.port for s in specs if s.port), DEFAULT_PORT)


def check_reach(config: Config, gateway: str | None, running: list[str] | None) -> list[Finding]:
    """On Linux with a docker bridge: does the broker (running: where it is bound; else: where
    the config says) listen on an address its containers can reach?"""
    if not sys.platform.startswith("linux") or not gateway:
        return []
    specs = [parse_listen(e) for e in config.listen]
    if running is not None:
        hosts = [a.rpartition(":")[0].strip("[]") for a in running]
        reachable = any(h == gateway or h in ("0.0.0.0", "::") for h in hosts)
        where = ", ".join(running) or "nothing"
    else:
        reachable = any(s.is_docker or s.is_wildcard or s.host == gateway for s in specs)
        where = ", ".join(str(s) for s in specs)
    if reachable:
        return [Finding(OK, f"containers can reach the broker on the docker bridge ({gateway})")]
    port = suggested_port(specs)
    restart = " and restart the broker" if running is not None else ""
    return [Finding(WARN, f"containers cannot reach the broker: it listens on {where}, and containers of the "
                    f"Linux docker engine reach the host only on its bridge ({gateway})",
                    f"add `docker:{port}` to `listen` in {config_words(config)}{restart} (Docker Desktop "
                    "needs nothing)")]


def check_ports(config: Config, gateway: str | None) -> list[Finding]:
    """With no broker running: is each address it would listen on free? (Another program on
    the port stops `run` at once.)"""
    out: list[Finding] = []
    for spec in (parse_listen(e) for e in config.listen):
        host = gateway if spec.is_docker else None if spec.is_bridge else spec.host  # podman's come and go
        if host is None or spec.port == 0:
            continue
        taken = _bind_error(host, spec.port)
        where = format_hostport(host, spec.port)
        if taken == errno.EADDRINUSE:
            out.append(Finding(WARN, f"port {spec.port} on {host} is taken by another program: the broker "
                               "cannot start there",
                               f"stop it (`ss -ltnp 'sport = :{spec.port}'` names it), or choose another port "
                               f"in `listen` in {config_words(config)}"))
        elif taken == errno.EADDRNOTAVAIL:
            out.append(Finding(WARN, f"{where} is not an address of this machine: the broker cannot listen there",
                               f"fix `listen` in {config_words(config)}"))
        elif taken is None:
            out.append(Finding(OK, f"{where} is free for the broker"))
    return out


def _bind_error(host: str, port: int) -> int | None:
    """The errno binding (host, port) fails with, as the broker would bind it; None when free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: TIME_WAIT is no clash
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno or -1
    return None


def readable_by(uid: int, owner: int, mode: int, need: int) -> bool:
    """Whether `uid` gets permission bits `need` (as owner bits, e.g. 0o700) on a file of `owner`
    with `mode`: root gets all, the owner its bits, anyone else the "other" bits."""
    if uid == 0:
        return True
    bits = mode if owner == uid else mode << 6
    return bits & need == need


def check_container_user(config: Config, name: str, uid: int | None, image: str | None = None) -> list[Finding]:
    """Can the container's user (`uid`, or the user `image` runs as: 1000 for `node` images) use
    the sandbox's dir? A bind mount shows host ownership as is: without it, Claude Code runs
    onboarding and ends in "Unable to connect to Anthropic services"."""
    where = claude_dir.sandbox_dir(config.state_dir, name)
    try:
        owner = where.stat().st_uid
    except OSError:
        return []  # doctor_checks already says the dir is missing
    out: list[Finding] = []
    if uid is None and image:
        try:
            uid = image_uid(image)
        except ImageLookupError as exc:
            return [Finding(WARN, f"cannot tell which user image {image!r} runs as: {exc.message}",
                            f"give it with `--uid UID` (`docker image inspect {image}` shows `User`)")]
        out.append(Finding(OK, f"image {image!r} runs as uid {uid}"))
    if uid is None:
        return [Finding(OK, f"sandbox {name!r}: its Claude Code dir belongs to uid {owner}, so its container must "
                        f"run as uid {owner} (or root); `doctor --sandbox {name} --image IMAGE` (or --uid UID) "
                        "checks the user an image runs as")]
    fix = f"`inference-broker docker-args {name} --rotate --uid {uid}` hands it to uid {uid} (with a new key)"
    blocked = [p for p, need in ((where, 0o700), (where / CREDENTIALS_FILE, 0o600), (where / CONFIG_FILE, 0o600))
               if not _usable(p, uid, need)]
    if blocked:
        return out + [Finding(PROBLEM, f"sandbox {name!r}: a container running as uid {uid} cannot use "
                        f"{', '.join(str(p) for p in blocked)} (owned by uid {owner}): Claude Code there would "
                        "start onboarding and fail with \"Unable to connect\"", fix)]
    return out + [Finding(OK, f"sandbox {name!r}: a container running as uid {uid} can use its Claude Code dir")]


def _usable(path: Path, uid: int, need: int) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True  # Claude Code makes it; the dir check covers whether it can
    return readable_by(uid, st.st_uid, stat.S_IMODE(st.st_mode), need)


PLAN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def plan_words(plan: Plan) -> str:
    """A plan as words; the stand-in is the sandbox's to write, so anything but a plain name
    (an escape sequence for the terminal, a page of text) is not repeated."""
    name = plan.subscription_type
    if not name:
        return "no plan (\"Claude API\")"
    return f"the {name} plan" if PLAN_NAME.fullmatch(name) else "a plan with an unreadable name"


def check_sandbox_plan(config: Config, name: str, host: Plan, running: bool) -> list[Finding]:
    """The stand-in login shows the plan of the login the broker lends (a sandbox made before
    `claude /login` showed none until the broker adopted the login)."""
    if not host.subscription_type:
        return []
    shown = stand_in_plan(_read_no_link(claude_dir.sandbox_dir(config.state_dir, name) / CREDENTIALS_FILE))
    if shown is None or shown == host:
        return []
    fix = (f"`inference-broker docker-args {name} --rotate` writes it again (with a new key)" if running else
           "start the broker (`inference-broker run`): it brings every sandbox's plan up to date and keeps its key")
    return [Finding(WARN, f"sandbox {name!r} shows {plan_words(shown)} while your login is on {plan_words(host)}",
                    fix)]


def _read_no_link(path: Path, limit: int = 1024 * 1024) -> str:
    """A regular file's text, never through a link the sandbox planted; "" otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return ""
        return fh.read(limit).decode("utf-8", "replace")
