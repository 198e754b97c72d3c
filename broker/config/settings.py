"""The user's config file: YAML, every key checked, errors that name the key.

Parsing only: `config.files` finds and reads the file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import yaml

from broker.common.errors import ConfigError
from broker.config.fields import Fields
from broker.config.listen import default_listen

APP = "inference-broker"
DEFAULT_LISTEN = default_listen(sys.platform)  # Linux: loopback and every container bridge
MiB = 1024 * 1024


@dataclass(frozen=True)
class RefreshSettings:
    mode: str = "own"  # own: refresh and write back; follow: only adopt what Claude Code writes
    ahead_fraction: float = 0.10  # refresh when this share of the lifetime remains ...
    ahead_min_seconds: float = 300.0  # ... or this many seconds, whichever is larger
    proxy_margin_seconds: float = 600.0  # never start forwarding on a token closer to expiry
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 600.0
    request_timeout_seconds: float = 30.0
    keychain_poll_seconds: float = 30.0


@dataclass(frozen=True)
class ProxySettings:
    allowed_hosts: tuple[str, ...] = ()  # extra Host names on top of the built-in ones
    allowed_origins: tuple[str, ...] = ()  # browsers are refused unless listed here
    max_body_bytes: int = 32 * MiB
    connect_timeout_seconds: float = 30.0
    read_idle_timeout_seconds: float = 600.0  # silence allowed between chunks of a stream
    auth_failures_per_minute: int = 10  # wrong-key answers per address before 429s
    auth_failures_total_per_minute: int = 100  # ... and from all addresses together
    max_connections: int = 512  # open client connections (clamped to half the fd limit)
    header_timeout_seconds: float = 10.0  # a connection without a valid key is closed after this
    keepalive_timeout_seconds: float = 75.0  # idle time allowed between a sandbox's requests
    max_inflight_bytes_per_sandbox: int = 64 * MiB  # request bodies held at once, one sandbox
    max_inflight_bytes: int = 128 * MiB  # ... all sandboxes together


@dataclass(frozen=True)
class CredentialSettings:
    sources: tuple[str, ...] = ()  # empty: the profile's order (keychain, then file)
    file: Path | None = None  # empty: $CLAUDE_CONFIG_DIR/.credentials.json or ~/.claude/...


@dataclass(frozen=True)
class AuditSettings:
    max_bytes: int = 10 * MiB
    backups: int = 5
    sandbox_bytes_per_hour: int = 4 * MiB  # one sandbox's share, so it cannot rotate others away


@dataclass(frozen=True)
class UsageSettings:
    retention_days: float = 90.0  # ledger rows older than this are removed
    stop_at_percent: float | None = None  # refuse every sandbox once the 5-hour window is this full


@dataclass(frozen=True)
class Config:
    path: Path | None = None  # where it was read from (None: defaults only)
    provider: str = "anthropic-oauth"
    listen: tuple[str, ...] = DEFAULT_LISTEN
    state_dir: Path = field(default_factory=lambda: Path(platformdirs.user_state_dir(APP)))
    upstream_url: str | None = None
    token_url: str | None = None
    credentials: CredentialSettings = field(default_factory=CredentialSettings)
    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    usage: UsageSettings = field(default_factory=UsageSettings)
    log_level: str = "info"
    docker_bridge: str = "docker0"  # the interface `docker` in `listen` stands for
    docker_poll_seconds: float = 5.0  # how often to look for it while it is missing
    dashboard_port: int = 0  # the local dashboard's port on 127.0.0.1 (0: any free port)

    @property
    def control_socket(self) -> Path:
        return self.state_dir / "broker.sock"

    @property
    def keystore_path(self) -> Path:
        return self.state_dir / "broker.db"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "usage.db"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.jsonl"


def _path(f: Fields, key: str, base: Path | None) -> Path | None:
    value = f.get(key, str)
    if value is None:
        return None
    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


def parse_config(text: str, where: str, path: Path | None = None) -> Config:

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    f = Fields(data, where, "", ConfigError)
    base = path.parent if path else None
    defaults = Config()

    c = f.sub("credentials")
    credentials = CredentialSettings(sources=c.strings("sources"), file=_path(c, "file", base))
    for s in credentials.sources:
        if s not in ("keychain", "file", "setup-token", "keyring"):
            raise c.fail("credentials.sources", f"unknown source {s!r} (known: keychain, file, setup-token, keyring)")
    c.done()

    r = f.sub("refresh")
    d = RefreshSettings()
    refresh = RefreshSettings(
        mode=r.choice("mode", ("own", "follow"), d.mode),
        ahead_fraction=r.positive("ahead_fraction", d.ahead_fraction),
        ahead_min_seconds=r.positive("ahead_min_seconds", d.ahead_min_seconds, allow_zero=True),
        proxy_margin_seconds=r.positive("proxy_margin_seconds", d.proxy_margin_seconds, allow_zero=True),
        backoff_initial_seconds=r.positive("backoff_initial_seconds", d.backoff_initial_seconds),
        backoff_max_seconds=r.positive("backoff_max_seconds", d.backoff_max_seconds),
        request_timeout_seconds=r.positive("request_timeout_seconds", d.request_timeout_seconds),
        keychain_poll_seconds=r.positive("keychain_poll_seconds", d.keychain_poll_seconds),
    )
    if refresh.ahead_fraction >= 1:
        raise r.fail("refresh.ahead_fraction", "must be below 1")
    r.done()

    p = f.sub("proxy")
    dp = ProxySettings()
    proxy = ProxySettings(
        allowed_hosts=tuple(h.lower() for h in p.strings("allowed_hosts")),
        allowed_origins=p.strings("allowed_origins"),
        max_body_bytes=int(p.positive("max_body_bytes", dp.max_body_bytes)),
        connect_timeout_seconds=p.positive("connect_timeout_seconds", dp.connect_timeout_seconds),
        read_idle_timeout_seconds=p.positive("read_idle_timeout_seconds", dp.read_idle_timeout_seconds),
        auth_failures_per_minute=int(p.positive("auth_failures_per_minute", dp.auth_failures_per_minute)),
        auth_failures_total_per_minute=int(p.positive("auth_failures_total_per_minute",
                                                      dp.auth_failures_total_per_minute)),
        max_connections=int(p.positive("max_connections", dp.max_connections)),
        header_timeout_seconds=p.positive("header_timeout_seconds", dp.header_timeout_seconds),
        keepalive_timeout_seconds=p.positive("keepalive_timeout_seconds", dp.keepalive_timeout_seconds),
        max_inflight_bytes_per_sandbox=int(p.positive("max_inflight_bytes_per_sandbox",
                                                      dp.max_inflight_bytes_per_sandbox)),
        max_inflight_bytes=int(p.positive("max_inflight_bytes", dp.max_inflight_bytes)),
    )
    p.done()

    a = f.sub("audit")
    da = AuditSettings()
    audit = AuditSettings(max_bytes=int(a.positive("max_bytes", da.max_bytes)),
                          backups=int(a.positive("backups", da.backups, allow_zero=True)),
                          sandbox_bytes_per_hour=int(a.positive("sandbox_bytes_per_hour", da.sandbox_bytes_per_hour)))
    a.done()

    u = f.sub("usage")
    stop = u.get("stop_at_percent", (int, float))
    if stop is not None and not 0 < stop <= 100:
        raise u.fail("usage.stop_at_percent", f"must be a percentage above 0 and at most 100 (got {stop!r})")
    usage = UsageSettings(retention_days=u.positive("retention_days", UsageSettings.retention_days),
                          stop_at_percent=float(stop) if stop is not None else None)
    u.done()

    listen = f.strings("listen", DEFAULT_LISTEN)
    if not listen:
        raise f.fail("listen", "must list at least one host:port")
    for key in ("upstream_url", "token_url"):
        value = f.get(key, str)
        if value is not None and not value.startswith(("http://", "https://")):
            raise f.fail(key, f"must be an http(s) URL (got {value!r})")
    config = Config(
        path=path,
        provider=f.get("provider", str, defaults.provider),
        listen=listen,
        state_dir=_path(f, "state_dir", base) or defaults.state_dir,
        upstream_url=f.get("upstream_url", str),
        token_url=f.get("token_url", str),
        credentials=credentials,
        refresh=refresh,
        proxy=proxy,
        audit=audit,
        usage=usage,
        log_level=f.choice("log_level", ("debug", "info", "warning", "error"), defaults.log_level),
        docker_bridge=f.get("docker_bridge", str, defaults.docker_bridge),
        docker_poll_seconds=f.positive("docker_poll_seconds", defaults.docker_poll_seconds),
        dashboard_port=int(f.positive("dashboard_port", 0, allow_zero=True)),
    )
    f.done()
    _check_listen(config.listen, where)
    return config


def _check_listen(entries: tuple[str, ...], where: str) -> None:
    try:
        from broker.config.listen import parse_listen
    except ImportError:  # pragma: no cover - listen parsing lands with sandbox networking
        return
    for entry in entries:
        try:
            parse_listen(entry)
        except ConfigError as exc:
            raise ConfigError(f"{where}: listen: {exc.message}") from None
