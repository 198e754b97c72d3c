"""The running broker: adapters wired around the core, on one asyncio loop.

Faces (tray, CLI through the control socket) see it through `snapshot()`, `subscribe()` and
`perform()`; nothing else reaches inside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from broker import __version__
from broker.sandboxes import wiring
from broker.sandboxes.access import SandboxAccess
from broker.sandboxes import bridges, claude_dir
from broker.common.atomic_files import write_private
from broker.proxy.audit import AuditLog
from broker.autostart.writers import Autostart
from broker.config.files import profile_for
from broker.runtime.control_socket import ControlServer
from broker.dashboard.server import DashboardServer
from broker.sandboxes.key_store import KeyStore
from broker.usage.ledger import Ledger
from broker.login.oauth import OAuthRefresher
from broker.common.private_files import private_dir
from broker.proxy.server import ProxyServer
from broker.proxy.upstream import Upstream
from broker.usage.usage_poll import UsageClient
from broker.status.actions import Action
from broker.config.settings import Config
from broker.common.errors import BrokerError
from broker.config.listen import parse_listen, resolve_listen
from broker.config.profiles import Profile
from broker.usage.budget import Budget
from broker.sandboxes.claude_config import Plan
from broker.sandboxes.info import SandboxInfo
from broker.status.snapshot import SIGNED_OUT, ProxyStatus, Snapshot
from broker.common.wording import PLAN_LABEL, login_hint
from broker.login.source_setup import build_sources
from broker.usage.accounting import Metering
from broker.usage.plan_watch import PlanWatch
from broker.login.token_manager import TokenManager
from broker.login.pending_file import NAME as PENDING_NAME

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
        self.ledger = Ledger(config.ledger_path, retention_days=config.usage.retention_days)
        self.metering = Metering(self.ledger, lambda: self.plan.limits, config.usage.stop_at_percent)
        self.access = SandboxAccess(self.keystore, on_change=self._changed, meter=self.metering)
        self.refresh_log = state / "refresh-events.jsonl"
        token_url = config.token_url or self.profile.token_url
        refresher = (OAuthRefresher(token_url, self.profile.client_id or "", config.refresh.request_timeout_seconds,
                                    self.profile.oauth_user_agent or "inference-broker", self.profile.oauth_scopes)
                     if self.profile.auth_kind == "oauth" and token_url else None)
        self.tokens = TokenManager(
            build_sources(config, self.profile), refresher, config.refresh,
            lock_path=state / "locks" / "refresh.lock", pending_path=state / PENDING_NAME,
            record=self._record_refresh, on_change=self._token_changed,
            login_hint=login_hint(self.profile.login_hint),
        )
        upstream_url = config.upstream_url or self.profile.upstream
        usage = UsageClient(upstream_url, self.profile.usage_path) if self.profile.usage_path else None
        self.plan = PlanWatch(self.tokens, usage, self.profile.usage_poll_seconds, on_change=self._changed)
        self.proxy: ProxyServer | None = None
        self._audit: AuditLog | None = None
        self._refresh_events: AuditLog | None = None
        self.dashboard: DashboardServer | None = None
        self.dashboard_error = "the dashboard has not started yet"
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._push_pending = False
        self.stopped = asyncio.Event()
        self._autostart_probe: Callable[[], bool] = lambda: Autostart.for_config(self.config).is_enabled()
        self._autostart_on = False  # as last probed (off the loop), for snapshots
        self._plan_handed = Plan()  # the plan sandboxes' stand-in logins were last brought to

    # -- lifecycle
    async def start(self) -> None:
        config = self.config
        await asyncio.to_thread(private_dir, config.state_dir)  # an existing 0755 dir is tightened too
        self._refresh_events = await asyncio.to_thread(AuditLog, self.refresh_log, config.audit.max_bytes,
                                                       config.audit.backups)
        await self.tokens.start()
        self._hand_plan_to_sandboxes()
        await self.access.load()
        await self.metering.seed()
        self._audit = await asyncio.to_thread(AuditLog, config.audit_log, config.audit.max_bytes, config.audit.backups,
                                              config.audit.sandbox_bytes_per_hour)
        upstream = Upstream(config.upstream_url or self.profile.upstream,
                            config.proxy.connect_timeout_seconds, config.proxy.read_idle_timeout_seconds)
        self.proxy = ProxyServer(profile=self.profile, upstream=upstream, tokens=self.tokens, access=self.access,
                                 audit=self._audit, settings=config.proxy,
                                 token_margin=config.refresh.proxy_margin_seconds, on_change=self._changed,
                                 on_limits=self.plan.saw_headers, on_record=self.metering.account)
        self.proxy.forwarder.reserve = self.access.reserve  # budgets hold what a request may spend
        self.ledger.start()
        specs = [parse_listen(e) for e in config.listen]
        binds, warnings = resolve_listen(specs)
        for w in warnings:
            log.warning("%s", w)
        await self.proxy.start(binds)
        self.bridge_sites = bridges.BridgeSites(specs, config.docker_bridge, bind=self.proxy.add_site,
                                                unbind=self.proxy.remove_site, fixed=binds,
                                                on_change=self._bridges_changed, interval=config.docker_poll_seconds)
        await self.bridge_sites.sync()
        await self._write_listen()
        self.control = ControlServer(config.control_socket, self.handle_control)
        await self.control.start()
        await self._probe_autostart()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._tasks.append(asyncio.create_task(self.plan.run(), name="plan-usage-poll"))
        from broker.dashboard.views import DashboardViews  # the dashboard's pages are a face

        dashboard = DashboardServer(DashboardViews(self), port=self.config.dashboard_port)
        try:
            await dashboard.start()
            self.dashboard = dashboard
        except OSError as exc:  # the proxy matters more than the dashboard: keep serving
            log.error("the dashboard cannot listen on 127.0.0.1:%s: %s", self.config.dashboard_port, exc.strerror or exc)
            self.dashboard_error = f"the dashboard could not start ({exc.strerror or exc}); change `dashboard_port`"
        if self.bridge_sites.wanted:
            self._tasks.append(asyncio.create_task(self.bridge_sites.run(), name="bridge-watch"))
        token = self.tokens.status()
        log.info("inference-broker %s ready (provider %s, token %s)", __version__, self.profile.name, token.state)
        if token.state == SIGNED_OUT:
            log.warning("no usable login yet (%s): sandboxes get 401 until then; the broker picks the new "
                        "login up on its own", token.reason)
        self._changed()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if getattr(self, "control", None):
            await self.control.stop()
        if getattr(self, "dashboard", None):
            await self.dashboard.stop()
        self.access.end_streams()
        if self.proxy is not None:
            await self.proxy.stop()
        await self.tokens.stop()
        await asyncio.to_thread(self.ledger.close)
        await self.access.close()
        for records in (self._audit, self._refresh_events):
            if records is not None:
                await asyncio.to_thread(records.close)
        await asyncio.to_thread((self.config.state_dir / "listen.json").unlink, missing_ok=True)
        self.stopped.set()

    async def _housekeeping(self) -> None:
        """Each second: pick up key-store changes another process (the CLI with no broker to
        talk to) wrote. Each 5 s: save usage counters. Each 30 s: look at launch at login."""
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            try:
                await self.access.sync()
                if ticks % 5 == 0:
                    await self.access.flush()
                if ticks % 30 == 0:
                    await self._probe_autostart()
            except Exception as exc:
                log.error("housekeeping failed: %s", exc)

    async def _bridges_changed(self) -> None:
        """A container bridge came or went: tell `docker-args` (listen.json) and the faces."""
        await self._write_listen()
        self._changed()

    async def _write_listen(self) -> None:
        assert self.proxy is not None
        data = json.dumps({"listen": self.proxy.bound}).encode()
        await asyncio.to_thread(write_private, self.config.state_dir / "listen.json", data)

    # -- state for faces
    def set_autostart_probe(self, probe: Callable[[], bool]) -> None:
        self._autostart_probe = probe

    async def _probe_autostart(self) -> None:
        try:
            self._autostart_on = bool(await asyncio.to_thread(self._autostart_probe))
        except Exception:
            self._autostart_on = False

    def snapshot(self) -> Snapshot:
        proxy = self.proxy
        return Snapshot(
            now=time.time(),
            token=self.tokens.status(),
            proxy=ProxyStatus(
                listen=tuple(proxy.bound) if proxy else (),
                paused=self.access.paused,
                requests_today=proxy.requests_today if proxy else 0,
                active_streams=self.access.active_streams,
                plan_limits=tuple(sorted(proxy.plan_limits.items())) if proxy else (),
            ),
            sandboxes=self.sandboxes(),
            provider=self.profile.name, plan_label=self.profile.label or PLAN_LABEL,
            login_hint=login_hint(self.profile.login_hint),
            autostart=self._autostart_on,
            version=__version__,
            limits=self.plan.limits,
            limits_poll=self.plan.poll_state(),
        )

    def sandboxes(self) -> tuple[SandboxInfo, ...]:
        now, budgets = time.time(), self.access.budgets
        return tuple(replace(s, budget_used=self.metering.used(s.name, now, budgets.get(s.name)))
                     for s in self.access.sandboxes())

    async def set_budget(self, name: str, budget: Budget | None) -> None:
        await self.access.set_budget(name, budget)
        log.info("sandbox %s: budget %s", name, budget.words() if budget else "off")

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

    def _token_changed(self) -> None:
        self._hand_plan_to_sandboxes()
        self._changed()

    def _hand_plan_to_sandboxes(self) -> None:
        """When a login with a plan is adopted (at start, after `claude /login`, a plan change),
        every sandbox's stand-in login shows that plan too, keeping its key."""
        token = self.tokens.status()
        plan = Plan(token.subscription_type, token.rate_limit_tier)
        if not plan.subscription_type or plan == self._plan_handed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._plan_handed = plan
        self._tasks.append(loop.create_task(self._follow_plan(plan), name="sandbox-plan"))

    async def _follow_plan(self, plan: Plan) -> None:
        try:
            names = await asyncio.to_thread(claude_dir.follow_plan, self.config.state_dir, plan)
        except (BrokerError, OSError) as exc:
            log.warning("sandboxes keep their old plan: %s", exc)
            return
        if names:
            log.info("sandbox(es) %s now show the %s plan", ", ".join(names), plan.subscription_type)

    def _push(self) -> None:
        self._push_pending = False
        snap = self.snapshot()
        for cb in list(self._subscribers):
            try:
                cb(snap)
            except Exception as exc:
                log.error("a face failed to take the new state: %s", exc)

    def docker_run_flags(self, name: str) -> str:
        """Sandbox `name`'s `docker run` flags. Blocks (it runs `ip`): call it in a thread."""
        return wiring.run_flags(self.config, list(self.proxy.bound) if self.proxy else [], name)

    async def new_sandbox(self) -> str:
        """A sandbox with a free name and its config dir, for the tray; returns the name."""
        token = self.tokens.status()
        name = await wiring.create(self.access, self.config, Plan(token.subscription_type, token.rate_limit_tier))
        self._changed()
        return name

    def _record_refresh(self, event: dict[str, Any]) -> None:
        """Queued for the refresh-events file's own writer thread."""
        if self._refresh_events is not None:
            self._refresh_events.write(event)

    # -- actions
    async def perform(self, action: Action, arg: str | None = None) -> None:
        if action is Action.REFRESH:
            await self.tokens.refresh("manual")
        elif action in (Action.PAUSE, Action.RESUME):
            await self.access.set_paused(action is Action.PAUSE)
        elif action is Action.REVOKE_SANDBOX:
            if not arg or not await self.access.revoke(arg):
                raise BrokerError(f"no sandbox named {arg!r}")
            await asyncio.to_thread(claude_dir.remove, self.config.state_dir, arg)
        elif action is Action.REVOKE_ALL:
            await self.access.revoke_all()
            await asyncio.to_thread(claude_dir.remove_all, self.config.state_dir)
        elif action is Action.SET_AUTOSTART:
            auto = Autostart.for_config(self.config)
            await asyncio.to_thread(auto.enable if arg == "on" else auto.disable)
            await self._probe_autostart()
        elif action is Action.QUIT:
            asyncio.get_running_loop().call_soon(self.stopped.set)
        else:
            raise BrokerError(f"{action.value} is handled by the tray, not the service")
        log.info("action: %s%s", action.value, f" {arg}" if arg and action is Action.REVOKE_SANDBOX else "")
        self._changed()

    # -- control socket
    async def handle_control(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request from the control socket (the CLI talking to this running broker)."""
        from broker.runtime.control_ops import handle

        return await handle(self, req)
