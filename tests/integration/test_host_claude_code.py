"""The broker and the real Claude Code CLI on the host share one login, near expiry.

Claude Code runs as the host would (`claude -p`, private HOME), its HTTPS traffic routed by
mitmproxy to a fake Anthropic whose refresh tokens are single-use and whose token endpoint
answers slowly (1-4 s) and counts every spent refresh token presented again. Each round
writes a login that expires in ~200 s, so both the broker (refresh due at once) and Claude
Code (refreshes when <= 5 min remain) want to refresh it at the same moment. Rounds run
concurrently, each with its own HOME and broker, against one shared fake.

Passing means: Claude Code answered every round, the store holds a valid pair after every
round, no refresh token was spent twice, and the broker still serves a sandbox. A control
run with Claude Code's locks switched off in the broker shows the same rounds do collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from broker.common import fault_points
from broker.common.redact import fingerprint
from broker.login.claude_locks import OWNER_RECORD, HostLocks
from broker.config.settings import Config, CredentialSettings, RefreshSettings
from broker.runtime.service import Service
from tests import hosttools
from tests.fakes import fault_launcher
from tests.fakes.broker_process import BrokerProcess
from tests.fakes.login import write_login
from tests.fakes.anthropic_site import FakeSite
from tests.fakes.eventually import eventually_async
from tests.fakes.mitm import running_mitm
from tests.fakes.threaded import serve_in_thread
from tests.support import require

pytestmark = pytest.mark.integration

ROUNDS = 6
REPLY = "Hello from the fake upstream"


@dataclass
class Shared:
    site: FakeSite
    url: str
    mitm: object
    tmp: Path


@pytest.fixture
def shared(tmp_path: Path):
    mitmdump = hosttools.installed(hosttools.mitmdump)
    require(mitmdump is not None, "mitmproxy could not be installed (python -m tests.hosttools)")
    site = FakeSite()
    site.endpoint.slow = (1.0, 4.0)
    with serve_in_thread(site.make_app) as url:
        with running_mitm(mitmdump, f"127.0.0.1:{url.port}", tmp_path) as mitm:
            yield Shared(site, str(url), mitm, tmp_path)


def cli(which: str) -> Path:
    exe = hosttools.ci_claude() if which == "ci" else hosttools.installed(hosttools.pinned_claude)
    require(exe is not None and exe.exists(), f"Claude Code CLI ({which}) not installed")
    return exe


def say_version(exe: Path, capsys) -> str:
    version = hosttools.claude_version(exe)
    with capsys.disabled():
        print(f"\n[host Claude Code {version} at {exe}]", end=" ")
    return version


def require_current(version: str) -> None:
    """Tests of the current release's behaviour need at least the release the profile mirrors."""
    if tuple(int(x) for x in version.split(".") if x.isdigit()) < hosttools.PROFILE_CLAUDE_VERSION:
        pytest.fail(f"Claude Code {version} is older than the release the provider profile mirrors "
                    f"({'.'.join(map(str, hosttools.PROFILE_CLAUDE_VERSION))}): install the current one as "
                    "CI does (`npm install -g --prefer-online @anthropic-ai/claude-code@latest`) or point "
                    "INFERENCE_BROKER_TEST_CLAUDE at it", pytrace=False)


class NoHostLocks:
    """The broker as it was before: only its own lock, none Claude Code knows about."""

    def refreshing(self, **kw):
        return contextlib.nullcontext()

    def writing(self, **kw):
        return contextlib.nullcontext()


async def run_claude(exe: Path, home: Path, shared: Shared, **extra_env: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **shared.mitm.client_env(),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
           "DISABLE_AUTOUPDATER": "1", **extra_env}
    proc = await asyncio.create_subprocess_exec(str(exe), "-p", "say hi", cwd=str(home), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def make_service(shared: Shared, root: Path, creds: Path, locks: bool) -> Service:
    # The round starts the broker's refresh itself (ahead_min: not due on its own for 140 s).
    config = Config(listen=("127.0.0.1:0",), state_dir=root / "state", upstream_url=shared.url,
                    token_url=shared.url + "/v1/oauth/token",
                    credentials=CredentialSettings(sources=("file",), file=creds),
                    refresh=RefreshSettings(request_timeout_seconds=20.0, ahead_min_seconds=60.0))
    service = Service(config)
    service.set_autostart_probe(lambda: False)
    if not locks:
        service.tokens.sources[0].locks = NoHostLocks()
    return service


@contextlib.contextmanager
def first_event(kind: str, path: Path, then):
    """Call `then` once, when some process first opens or creates `path` (inotify)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    fired = []

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:  # noqa: ANN001
            if event.event_type == kind and os.fsdecode(event.src_path) == str(path) and not fired:
                fired.append(True)
                then()

    observer = Observer()
    observer.schedule(Handler(), str(path.parent), recursive=False)
    observer.start()
    try:
        yield
    finally:
        observer.stop()
        observer.join(timeout=5)


async def served(service: Service) -> int:
    """One request from a sandbox through the broker: the status it got."""
    key = (await service.handle_control({"op": "sandbox_add", "name": "probe"}))["key"]
    assert service.proxy is not None
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{service.proxy.bound[0]}/v1/messages", headers={"x-api-key": key},
                             json={"model": "claude-sonnet-4-6", "max_tokens": 16,
                                   "messages": [{"role": "user", "content": "hi"}]}) as resp:
            await resp.read()
            return resp.status


async def one_round(n: int, exe: Path, shared: Shared, locks: bool = True) -> dict:
    root = shared.tmp / f"round{n}"
    home = root / "home"
    creds = home / ".claude" / ".credentials.json"
    access, refresh = shared.site.endpoint.issue()
    write_login(creds, access, refresh, time.time() + 200)
    service = make_service(shared, root, creds, locks)
    await service.start()
    try:
        # The broker starts its refresh at a moment the host's own is under way, however long
        # this machine takes to start Claude Code: in even rounds when Claude Code first opens
        # the login (whoever locks first refreshes), in odd rounds when it takes its refresh
        # lock (it refreshes, the broker must wait and adopt).
        loop, cue = asyncio.get_running_loop(), asyncio.Event()
        moment = ("opened", creds) if n % 2 == 0 else ("created", creds.parent / ".oauth_refresh.lock")
        with first_event(*moment, lambda: loop.call_soon_threadsafe(cue.set)):
            host = asyncio.create_task(run_claude(exe, home, shared))
            await asyncio.wait({host, asyncio.ensure_future(cue.wait())}, timeout=60,
                               return_when=asyncio.FIRST_COMPLETED)
            broker = asyncio.create_task(service.tokens.refresh("round"))
            rc, out = await host
            await broker
        tokens = service.tokens
        await eventually_async(lambda: not tokens.refreshing and tokens.login is not None
                               and tokens.login.refresh_token != refresh, timeout=30, what="the broker moving on")
        stored = json.loads(creds.read_text())["claudeAiOauth"]
        status = await served(service)
        held = service.tokens.login
        result = {
            "round": n, "rc": rc, "answered": REPLY in out, "output": out[-400:],
            "store_valid": (stored["refreshToken"] in shared.site.endpoint.live_refresh
                            and stored["accessToken"] in shared.site.endpoint.valid_access),
            "broker_holds_store": held is not None and held.refresh_token == stored["refreshToken"],
            "served": status, "mode": oct(creds.stat().st_mode & 0o777),
        }
    finally:
        await service.stop()
    assert leaked(shared, root) == []
    return result


def leaked(shared: Shared, root: Path) -> list[str]:
    """Files of the broker's (state dir, logs, audit, refresh events) that hold a token."""
    ep = shared.site.endpoint
    secrets = ep.valid_access | ep.live_refresh | ep.spent_refresh
    out = []
    for path in (root / "state").rglob("*"):
        if path.is_file() and not path.name.endswith((".db", ".db-wal", ".db-shm")):
            data = path.read_text(errors="replace")
            out += [f"{path.name} holds a token" for t in secrets if t in data]
    return out


async def rounds(exe: Path, shared: Shared, locks: bool = True) -> list[dict]:
    return list(await asyncio.gather(*(one_round(n, exe, shared, locks) for n in range(ROUNDS))))


@pytest.mark.parametrize("which", ["ci", "pinned"])
async def test_host_and_broker_share_one_login_without_spending_a_token_twice(which, shared, capsys):
    exe = cli(which)
    version = say_version(exe, capsys)
    results = await rounds(exe, shared)
    endpoint = shared.site.endpoint
    for r in results:
        assert r["rc"] == 0 and r["answered"], f"Claude Code {version} round {r['round']}: {r['output']}"
        assert r["store_valid"] and r["broker_holds_store"], r
        assert r["served"] == 200 and r["mode"] == "0o600", r
    assert endpoint.reused == 0, f"{endpoint.reused} spent refresh tokens presented again"
    assert endpoint.problems == [] and shared.site.api.problems == []
    theirs = sum(1 for seen in endpoint.seen if seen["routed_from"])
    with capsys.disabled():
        print(f"[{ROUNDS} rounds: Claude Code refreshed in {theirs}, the broker in {endpoint.calls - theirs}, "
              "the other adopted]", end=" ")
    assert endpoint.calls == ROUNDS  # one refresh per round: the other side waited and adopted
    assert theirs >= ROUNDS // 2  # odd rounds: Claude Code held its lock when the broker began
    assert any(h.startswith("POST platform.claude.com") or h.startswith("GET api.anthropic.com")
               for h in shared.mitm.hosts_seen())  # Claude Code really went through the MITM


@pytest.mark.parametrize("which", ["ci", "pinned"])
async def test_control_without_claude_codes_locks_the_same_rounds_collide(which, shared, capsys):
    """Proof that the rounds above can fail: the broker without the lock protocol spends
    refresh tokens Claude Code spends too (the report of issue 12 saw 6 of 6)."""
    exe = cli(which)
    say_version(exe, capsys)
    results = await rounds(exe, shared, locks=False)
    with capsys.disabled():
        print(f"[without Claude Code's locks: {shared.site.endpoint.reused} of {ROUNDS} rounds reused a "
              "spent refresh token]", end=" ")
    assert shared.site.endpoint.reused >= 1
    assert all(r["served"] == 200 for r in results)


async def test_refresh_request_matches_claude_codes(shared, capsys):
    """The same login refreshed once by Claude Code (the release CI installs) and once by the
    broker: the same fields, client id, scope string and User-Agent."""
    exe = cli("ci")
    require_current(say_version(exe, capsys))
    shared.site.endpoint.slow = None
    endpoint = shared.site.endpoint
    home = shared.tmp / "alone" / "home"
    creds = home / ".claude" / ".credentials.json"
    write_login(creds, *endpoint.issue(), time.time() + 200)
    rc, out = await run_claude(exe, home, shared)
    assert rc == 0 and REPLY in out, out
    theirs = [s for s in endpoint.seen if s["routed_from"]]
    assert len(theirs) == 1, endpoint.seen
    write_login(creds, *endpoint.issue(), time.time() + 200)
    service = make_service(shared, shared.tmp / "alone", creds, locks=True)
    await service.start()
    try:
        await service.tokens.refresh("manual")
    finally:
        await service.stop()
    ours = [s for s in endpoint.seen if not s["routed_from"]]
    assert len(ours) == 1, endpoint.seen
    assert ours[0]["body"] == theirs[0]["body"]
    assert ours[0]["user_agent"] == theirs[0]["user_agent"]
    assert endpoint.problems == []


async def test_claude_code_takes_over_the_lock_of_a_broker_that_died(shared, capsys):
    """A broker killed while refreshing leaves its locks and owner record. The owner record
    names a dead process, so Claude Code (2.1.332 and later) takes the lock over at once and
    refreshes; without a record it would give up after its retries (seen: no refresh, lock
    left), until the lock goes stale 60 s later."""
    exe = cli("ci")
    require_current(say_version(exe, capsys))
    shared.site.endpoint.slow = None
    home = shared.tmp / "dead" / "home"
    creds = home / ".claude" / ".credentials.json"
    write_login(creds, *shared.site.endpoint.issue(), time.time() + 200)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the broker's stand-in: holds the locks until killed
        try:
            with HostLocks(creds.parent).refreshing(wait=5):
                os.write(ready_w, b"1")
                time.sleep(600)
        finally:
            os._exit(1)
    assert os.read(ready_r, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert (creds.parent / ".oauth_refresh.lock").is_dir() and (creds.parent / OWNER_RECORD).exists()
    rc, out = await run_claude(exe, home, shared)
    assert rc == 0 and REPLY in out, out
    assert [s["routed_from"] for s in shared.site.endpoint.seen] == ["platform.claude.com"]  # it refreshed
    assert not (creds.parent / ".oauth_refresh.lock").exists()
    stored = json.loads(creds.read_text())["claudeAiOauth"]
    assert stored["refreshToken"] in shared.site.endpoint.live_refresh


KILL_STEPS = [step for step in fault_points.STEPS if step != fault_points.ANSWER_RECEIVED]  # see test_refresh_faults


@pytest.mark.parametrize("step", KILL_STEPS, ids=[s.replace(" ", "-") for s in KILL_STEPS])
async def test_a_broker_killed_at_any_step_of_a_refresh_leaves_the_host_claude_code_signed_in(step, shared, capsys):
    """The fault matrix's SIGKILL cells with the real Claude Code as the host: the broker
    process is killed at STEP of a refresh and started again; then Claude Code, finding its
    login near expiry, refreshes with the stored refresh token and answers. No refresh token
    is presented twice, and the broker follows the host's new pair."""
    exe = cli("ci")
    say_version(exe, capsys)
    endpoint = shared.site.endpoint
    endpoint.slow = None
    broker = BrokerProcess(shared.tmp / "broker", env_extra={fault_launcher.ENV: f"{step}=kill"})
    write_login(broker.creds, *endpoint.issue(), time.time() + 8 * 3600)
    broker.settings.update(upstream_url=shared.url, token_url=shared.url + "/v1/oauth/token",
                           refresh={"request_timeout_seconds": 20, "backoff_initial_seconds": 0.5,
                                    "backoff_max_seconds": 2})
    pending = broker.state_dir / "pending-login.json"
    try:
        await asyncio.to_thread(broker.start, python=("-m", "tests.fakes.fault_launcher"))
        await asyncio.to_thread(broker.cli, "refresh", timeout=60)
        assert broker.proc is not None and await asyncio.to_thread(broker.proc.wait, 30) == -signal.SIGKILL
        age = time.time() - 600  # time passes: the killed broker's locks go stale (the host may also
        for lock in (*HostLocks(broker.creds.parent).refresh_locks(), HostLocks(broker.creds.parent).storage_lock()):
            if lock.path.exists():  # take a refresh lock over from the dead owner on its own)
                os.utime(lock.path, (age, age))
        broker.env_extra.pop(fault_launcher.ENV)
        await asyncio.to_thread(broker.start)
        await eventually_async(lambda: not pending.exists(), timeout=20, what="a saved pair written back")
        doc = json.loads(broker.creds.read_text())
        doc["claudeAiOauth"]["expiresAt"] = int((time.time() + 200) * 1000)  # near expiry for the host
        broker.creds.write_text(json.dumps(doc))
        home = shared.tmp / "home"
        home.mkdir(exist_ok=True)
        rc, out = await run_claude(exe, home, shared, CLAUDE_CONFIG_DIR=str(broker.creds.parent))
        assert rc == 0 and REPLY in out, out
        assert any(s["routed_from"] for s in endpoint.seen), "Claude Code did not refresh"
        stored = json.loads(broker.creds.read_text())["claudeAiOauth"]
        assert endpoint.live_refresh == {stored["refreshToken"]}
        await eventually_async(lambda: broker.status()["token"]["fingerprint"] == fingerprint(stored["accessToken"]),
                               timeout=20, what="the broker following the host's new pair")
        assert endpoint.reused == 0, f"{endpoint.reused} spent refresh tokens presented again"
        assert endpoint.problems == []
    finally:
        await asyncio.to_thread(broker.stop)
