"""The running broker: adapters wired around the core, on one asyncio loop.

Faces (tray, CLI through the control socket) see it through `snapshot()`, `subscribe()` and
`perform()`; nothing else reaches inside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from broker import __version__
from broker.adapters import docker_net
from broker.adapters.atomic import write_private
from broker.adapters.audit import AuditLog
from broker.adapters.configfiles import profile_for
from broker.adapters.control import ControlServer
from broker.adapters.keystore import KeyStore
from broker.adapters.oauth import OAuthRefresher
from broker.adapters.proxy import ProxyServer
from broker.adapters.upstream import Upstream
from broker.core import dockerargs
from broker.core.actions import Action
from broker.core.config import Config
from broker.core.errors import BrokerError
from broker.core.listen import parse_listen, resolve_listen
from broker.core.profiles import Profile
from broker.core.redact import fingerprint
from broker.core.snapshot import ProxyStatus, Snapshot
from broker.core.wording import login_hint
from broker.login_sources import build_sources
from broker.tokens import TokenManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServicePaths:
    config_file: Path
    audit_log: Path
    state_dir: Path


class Service:
    def __init__(self, config: Config, *, profile: Profile | None = None) -> None:
        self.config = config
        self.profile = profile or profile_for(config)
        state = config.state_dir
        self.paths = ServicePaths(config.path or state / "config.yaml", config.audit_log, state)
        self.keystore = KeyStore(config.keystore_path)
        self.refresh_log = state / "refresh-events.jsonl"
        token_url = config.token_url or self.profile.token_url
        refresher = (OAuthRefresher(token_url, self.profile.client_id or "", config.refresh.request_timeout_seconds)
                     if self.profile.auth_kind == "oauth" and token_url else None)
        self.tokens = TokenManager(
            build_sources(config, self.profile), refresher, config.refresh,
            lock_path=state / "locks" / "refresh.lock", record=self._record_refresh, on_change=self._changed,
            login_hint=login_hint(self.profile.login_hint),
        )
        self.proxy: ProxyServer | None = None
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._push_pending = False
        self.stopped = asyncio.Event()
        self._autostart: Callable[[], bool] | None = None

    # -- lifecycle
    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.tokens.start()
        audit = AuditLog(self.config.audit_log, self.config.audit.max_bytes, self.config.audit.backups)
        upstream = Upstream(self.config.upstream_url or self.profile.upstream,
                            self.config.proxy.connect_timeout_seconds, self.config.proxy.read_idle_timeout_seconds)
        self.proxy = ProxyServer(profile=self.profile, upstream=upstream, tokens=self.tokens, keystore=self.keystore,
                                 audit=audit, settings=self.config.proxy,
                                 token_margin=self.config.refresh.proxy_margin_seconds, on_change=self._changed)
        self._audit = audit
        specs = [parse_listen(e) for e in self.config.listen]
        gateway = docker_net.bridge_gateway(self.config.docker_bridge) if any(s.is_docker for s in specs) else None
        binds, warnings = resolve_listen(specs, gateway)
        for w in warnings:
            log.warning("%s", w)
        await self.proxy.start(binds)
        self._write_listen()
        self.control = ControlServer(self.config.control_socket, self.handle_control)
        await self.control.start()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        late = [s for s in specs if s.is_docker and not gateway]
        if late:
            self._tasks.append(asyncio.create_task(self._bind_docker_late(late), name="docker-bind"))
        log.info("inference-broker %s ready (provider %s, token %s)", __version__, self.profile.name,
                 self.tokens.status().state)
        self._changed()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if getattr(self, "control", None):
            await self.control.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.tokens.stop()
        self.keystore.close()
        if getattr(self, "_audit", None):
            self._audit.close()
        try:
            (self.config.state_dir / "listen.json").unlink()
        except FileNotFoundError:
            pass
        self.stopped.set()

    async def _housekeeping(self) -> None:
        """Notice the CLI's revokes/pauses made straight in the key store; save usage counters."""
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            try:
                if self.proxy is not None:
                    self.proxy.sync_keys()
                if ticks % 5 == 0:
                    self.keystore.flush()
            except Exception as exc:
                log.error("housekeeping failed: %s", exc)

    async def _bind_docker_late(self, specs: list) -> None:
        gateway = await docker_net.watch_bridge(interval=self.config.docker_poll_seconds, name=self.config.docker_bridge)
        assert self.proxy is not None
        for spec in specs:
            try:
                await self.proxy.add_site(gateway, spec.port)
            except OSError as exc:
                log.error("cannot listen on the docker bridge %s:%s: %s", gateway, spec.port, exc)
        self._write_listen()
        self._changed()

    def _write_listen(self) -> None:
        assert self.proxy is not None
        write_private(self.config.state_dir / "listen.json",
                      json.dumps({"listen": self.proxy.bound}).encode())

    # -- state for faces
    def set_autostart_probe(self, probe: Callable[[], bool]) -> None:
        self._autostart = probe

    def snapshot(self) -> Snapshot:
        proxy = self.proxy
        return Snapshot(
            now=time.time(),
            token=self.tokens.status(),
            proxy=ProxyStatus(
                listen=tuple(proxy.bound) if proxy else (),
                paused=proxy.paused if proxy else False,
                requests_today=proxy.requests_today if proxy else 0,
                active_streams=proxy.active_streams if proxy else 0,
                plan_limits=tuple(sorted(proxy.plan_limits.items())) if proxy else (),
            ),
            sandboxes=tuple(self.keystore.list()),
            provider=self.profile.name,
            autostart=self._autostart_enabled(),
            version=__version__,
        )

    def _autostart_front(self):  # noqa: ANN202 - adapters.autostart.Autostart
        from broker.adapters.autostart import Autostart, broker_argv
        from broker.adapters.configfiles import default_config_path

        # A login item has none of this shell's environment: name a non-default config file.
        path = self.config.path
        explicit = path if path is not None and path != default_config_path({}) else None
        return Autostart.here(argv=broker_argv(explicit), state_dir=self.config.state_dir)

    def _autostart_enabled(self) -> bool:
        try:
            return self._autostart() if self._autostart else self._autostart_front().is_enabled()
        except Exception:
            return False

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _changed(self) -> None:
        """Coalesce bursts (a request storm) into at most a few pushes a second."""
        if self._push_pending or not self._subscribers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._push_pending = True
        loop.call_later(0.2, self._push)

    def _push(self) -> None:
        self._push_pending = False
        snap = self.snapshot()
        for cb in list(self._subscribers):
            try:
                cb(snap)
            except Exception as exc:
                log.error("a face failed to take the new state: %s", exc)

    def docker_run_flags(self, key: str | None = None) -> str:
        specs = [parse_listen(e) for e in self.config.listen]
        bound = self.proxy.bound if self.proxy else []
        port = dockerargs.sandbox_port(specs, bound, docker_net.bridge_gateway(self.config.docker_bridge))
        return dockerargs.run_line(dockerargs.base_url(port), key)

    def _record_refresh(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        path = self.refresh_log
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
        if new:
            path.chmod(0o600)

    # -- actions
    async def perform(self, action: Action, arg: str | None = None) -> None:
        assert self.proxy is not None
        if action is Action.REFRESH:
            await self.tokens.refresh("manual")
        elif action is Action.PAUSE:
            self.keystore.set_paused(True)
            self.proxy.reload_keys()
            self.proxy.end_streams()
        elif action is Action.RESUME:
            self.keystore.set_paused(False)
            self.proxy.reload_keys()
        elif action is Action.REVOKE_SANDBOX:
            if not arg or not self.keystore.revoke(arg):
                raise BrokerError(f"no sandbox named {arg!r}")
            self.proxy.reload_keys()
            self.proxy.end_streams(arg)
        elif action is Action.REVOKE_ALL:
            self.keystore.revoke_all()
            self.proxy.reload_keys()
            self.proxy.end_streams()
        elif action is Action.SET_AUTOSTART:
            auto = self._autostart_front()
            auto.enable() if arg == "on" else auto.disable()
        elif action is Action.QUIT:
            asyncio.get_running_loop().call_soon(self.stopped.set)
        else:
            raise BrokerError(f"{action.value} is handled by the tray, not the service")
        log.info("action: %s%s", action.value, f" {arg}" if arg and action is Action.REVOKE_SANDBOX else "")
        self._changed()

    # -- control socket
    async def handle_control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        assert self.proxy is not None
        if op == "ping":
            return {"ok": True, "pid": __import__("os").getpid()}
        if op == "status":
            return {"ok": True, "status": self.snapshot().to_json()}
        if op == "perform":
            await self.perform(Action(req["action"]), req.get("arg"))
            return {"ok": True, "status": self.snapshot().to_json()}
        if op in ("sandbox_add", "sandbox_rotate"):
            name = str(req["name"])
            key = self.keystore.add(name) if op == "sandbox_add" else self.keystore.rotate(name)
            self.proxy.reload_keys()
            if op == "sandbox_rotate":
                self.proxy.end_streams(name)
            self._changed()
            log.info("sandbox %s: key %s (fingerprint %s)", name, "issued" if op == "sandbox_add" else "rotated",
                     fingerprint(key))
            return {"ok": True, "key": key}
        if op == "sandbox_list":
            return {"ok": True, "sandboxes": [s.to_json() for s in self.keystore.list()]}
        raise BrokerError(f"unknown control request {op!r}")
