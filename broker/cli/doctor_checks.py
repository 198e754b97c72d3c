"""`doctor`'s checks (the command is `doctor_cmd`): find the login, check modes and wiring, say what to do.

Each check returns Findings; the CLI prints them and exits non-zero when any is a problem or a
warning (a first run's trouble is often only a warning here: a broker that is not running).
"""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

from broker.cli import doctor_wiring as wiring
from broker.cli.doctor_findings import OK, PROBLEM, WARN, Finding
from broker.runtime import control_socket
from broker.sandboxes import bridges, claude_dir
from broker.login.file_store import FileSource
from broker.sandboxes.key_store import KeyStore
from broker.sandboxes.claude_config import CREDENTIALS_FILE
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.sandboxes.keys import match_key
from broker.config.listen import parse_listen
from broker.config.profiles import Profile
from broker.login.sources import CredentialSource
from broker.common.wording import CLAUDE_LOGIN_HINT
from broker.cli.sandbox_cmd import host_plan


def check_sources(sources: list[CredentialSource], now: float) -> list[Finding]:
    out: list[Finding] = []
    found = False
    for source in sources:
        why = source.unavailable()
        if why:
            out.append(Finding(OK, f"{source.label}: not used here ({why})"))
            continue
        try:
            login = source.load()
        except BrokerError as exc:
            out.append(Finding(PROBLEM, f"{source.label}: {exc.message}",
                               f"{CLAUDE_LOGIN_HINT} to write a fresh login"))
            continue
        if login is None:
            out.append(Finding(OK, f"{source.label}: no login stored"))
            continue
        found = True
        if login.expires_at is not None and login.expires_at <= now:
            left = "expired"
        elif login.expires_at is not None:
            left = f"expires in {int((login.expires_at - now) // 60)} min"
        else:
            left = "no expiry recorded"
        kind = f"{login.subscription_type} plan " if login.subscription_type else ""
        refresh = "with a refresh token" if login.refresh_token else "without a refresh token"
        out.append(Finding(OK, f"{source.label}: {kind}login found, {left}, {refresh}"))
        if isinstance(source, FileSource):
            out.extend(check_mode(source.path))
    if not found:
        out.append(Finding(PROBLEM, "no Claude login found", f"{CLAUDE_LOGIN_HINT} "
                           "(or `inference-broker login --setup-token`)"))
    return out


def check_host_locks(sources: list[CredentialSource]) -> list[Finding]:
    """Claude Code's lock dirs left behind by a process that died: they stall every refresh."""
    out: list[Finding] = []
    for source in sources:
        locks = getattr(source, "locks", None)
        if locks is None or source.unavailable():
            continue
        for path, age in locks.stale_locks():
            out.append(Finding(WARN, f"{path} is a stale Claude Code lock (untouched for {int(age)} s): "
                               "a process died holding it",
                               f"if no `claude` or broker is refreshing right now, `rmdir {path}` "
                               "(Claude Code and the broker also take it over on their own after 60 s)"))
    return out


def check_mode(path: Path) -> list[Finding]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return []
    if mode & 0o077:
        return [Finding(PROBLEM, f"{path} is mode {mode:04o}: other users can read your Claude login",
                        f"chmod 600 {path}")]
    return [Finding(OK, f"{path} is private (mode {mode:04o})")]


def check_state_dir(config: Config) -> list[Finding]:
    d = config.state_dir
    if not d.exists():
        return [Finding(OK, f"state dir {d} will be created on first run")]
    mode = stat.S_IMODE(d.stat().st_mode)
    if mode & 0o077:
        return [Finding(WARN, f"state dir {d} is mode {mode:04o}", f"chmod 700 {d}")]
    return [Finding(OK, f"state dir {d} is private")]


def check_listen(config: Config, gateway: str | None) -> list[Finding]:
    specs = [parse_listen(e) for e in config.listen]
    out: list[Finding] = []
    if any(s.is_wildcard for s in specs):
        out.append(Finding(WARN, "listen includes a wildcard address: every network can reach the proxy",
                           "listen on 127.0.0.1 and `docker` instead"))
    if any(s.is_docker for s in specs) and not gateway:
        out.append(Finding(OK, "listen includes `docker` but no docker bridge exists yet: the broker binds "
                           "there once docker starts"))
    return out


def check_running(config: Config) -> tuple[list[Finding], dict | None]:
    try:
        reply = control_socket.request(config.control_socket, {"op": "status"}, timeout=10)
    except BrokerError:
        return [Finding(WARN, "the broker is not running: sandboxes get \"connection refused\"",
                        "start it with `inference-broker run`")], None
    st = reply["status"]
    level = OK if st["token"]["state"] in ("valid", "refreshing") else PROBLEM
    out = [Finding(OK, "the broker is running on " + ", ".join(st["listen"])),
           Finding(level, f"token {st['token']['state']}: {st['token']['reason']}")]
    unsaved = st["token"].get("writeback_problem")
    if unsaved:
        out.append(Finding(PROBLEM, unsaved, "the broker retries on its own; make the store writable "
                                             "(free disk space, unlock the keychain, fix the file's permissions)"))
    return out, st


def check_pending_login(config: Config) -> list[Finding]:
    """With no broker running: a refreshed login it saved that no store was known to hold."""
    from broker.login.pending_file import NAME, PendingFile

    pending = PendingFile(config.state_dir / NAME).load()
    if pending is None:
        return []
    return [Finding(PROBLEM, f"the login could not be written back to {pending.source or 'its store'}: the broker "
                             f"stopped first; the broker holds the current login ({config.state_dir / NAME})",
                    "start the broker (`inference-broker run`): it writes the login back at once")]


def check_sandbox_dir(config: Config, name: str, key_hash: str) -> list[Finding]:
    """The sandbox's Claude Code dir: there, private, and holding the sandbox's current key."""
    rotate = f"`inference-broker docker-args {name} --rotate` writes it with a new key"
    where = claude_dir.sandbox_dir(config.state_dir, name)
    if not where.is_dir():
        return [Finding(PROBLEM, f"sandbox {name!r} has no Claude Code dir ({where})", rotate)]
    out = []
    mode = stat.S_IMODE(where.stat().st_mode)
    if mode & 0o077:
        out.append(Finding(WARN, f"{where} is mode {mode:04o}: other users can read the sandbox key", f"chmod 700 {where}"))
    creds = where / CREDENTIALS_FILE
    if creds.is_file() and stat.S_IMODE(creds.stat().st_mode) & 0o077:
        out.append(Finding(PROBLEM, f"{creds} is readable by other users", f"chmod 600 {creds}"))
    key = claude_dir.read_key(config.state_dir, name)
    if key is None or match_key(key, {name: key_hash}) is None:
        what = "holds no key" if key is None else "holds a key that is no longer the sandbox's (rotated since?)"
        out.append(Finding(PROBLEM, f"sandbox {name!r}: its Claude Code dir {what}", rotate))
    else:
        out.append(Finding(OK, f"sandbox {name!r}: its Claude Code dir {where} holds its current key"))
    return out


def check_sandbox(config: Config, name: str, status: dict | None, uid: int | None = None,
                  image: str | None = None) -> list[Finding]:
    with KeyStore(config.keystore_path) as store:
        hashes = store.hashes()
        paused = store.paused()
    out = []
    if name not in hashes:
        out.append(Finding(PROBLEM, f"no sandbox named {name!r}", f"`inference-broker docker-args {name} --new`"))
    else:
        out.append(Finding(OK, f"sandbox {name!r} has a key"))
        out += check_sandbox_dir(config, name, hashes[name])
        out += wiring.check_container_user(config, name, uid, image)
        out += wiring.check_sandbox_plan(config, name, host_plan(config), status is not None)
    if paused:
        out.append(Finding(PROBLEM, "sandbox access is paused", "`inference-broker resume`"))
    for addr in (status or {}).get("listen", []):
        url = f"http://{addr}/"
        try:
            req = urllib.request.Request(url, method="HEAD", headers={"Host": "inference.local"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                out.append(Finding(OK, f"{url} answers ({resp.status})"))
        except OSError as exc:
            out.append(Finding(PROBLEM, f"{url} does not answer ({exc})"))
    if name in hashes:  # what the host sees is not what a container sees: say how to ask one
        image_words = image or "IMAGE"
        out.append(Finding(OK, f"to try the way in from a real container: `inference-broker sandbox check {name} "
                               f"--image {image_words}` (it names the step that fails)"))
    return out


def check_config_path(config: Config) -> Finding:
    if config.path is None:
        return Finding(OK, "config: none (defaults)")
    if config.path.exists():
        return Finding(OK, f"config: {config.path}")
    return Finding(OK, f"config: {config.path} (not there: the defaults apply; create it to change them)")


def run_checks(config: Config, profile: Profile, sources: list[CredentialSource], now: float,
               sandbox: str | None = None, uid: int | None = None, image: str | None = None) -> list[Finding]:
    findings = [check_config_path(config), Finding(OK, f"provider: {profile.name} ({profile.description})")]
    findings += check_sources(sources, now)
    findings += check_host_locks(sources)
    findings += check_state_dir(config)
    gateway = bridges.bridge_gateway(config.docker_bridge)
    findings += check_listen(config, gateway)
    running, status = check_running(config)
    findings += running
    findings += wiring.check_reach(config, gateway, list(status["listen"]) if status else None)
    if status is None:
        findings += check_pending_login(config)
        findings += wiring.check_ports(config, gateway)
    if sandbox:
        findings += check_sandbox(config, sandbox, status, uid, image)
    return findings


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f.__dict__ for f in findings], indent=2)


