"""The real broker as a separate process (`inference-broker run --no-tray`), for sandboxes to use.

It gets a private config, state dir and Claude login (a credentials file holding a token the
fake upstream accepts), and is stopped with SIGTERM like a user's session would stop it. Tests
learn the real ports from `state_dir/listen.json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import yaml

if TYPE_CHECKING:
    from tests.fakes.token_endpoint import FakeTokenEndpoint
    from tests.fakes.upstream import FakeAnthropic


def write_credentials(path: Path, access: str, refresh: str, lifetime_s: float = 8 * 3600) -> None:
    """A Claude Code login file (mode 0600), as `claude /login` leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {"claudeAiOauth": {
        "accessToken": access, "refreshToken": refresh,
        "expiresAt": int((time.time() + lifetime_s) * 1000),
        "scopes": ["user:inference", "user:profile"], "subscriptionType": "max",
    }}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)


@dataclass
class Upstream:
    """The fake Anthropic side a broker talks to, and the secrets each side must never see."""

    fake: FakeAnthropic
    tokens: FakeTokenEndpoint
    url: str
    token_url: str
    access: str  # the Claude login's access token: must never reach a sandbox
    refresh: str
    sandbox_keys: list[str] = field(default_factory=list)  # must never reach upstream


@dataclass
class BrokerProcess:
    root: Path  # private to the broker: config, state, login; never shown to a sandbox
    listen: Sequence[str]
    upstream_url: str
    token_url: str
    access: str
    refresh: str
    issued: list[str] = field(default_factory=list)  # every sandbox key handed out
    proc: subprocess.Popen[bytes] | None = None
    bound: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log_path(self) -> Path:
        return self.root / "broker-stderr.log"

    def _write_config(self) -> None:
        creds = self.root / "claude" / ".credentials.json"
        write_credentials(creds, self.access, self.refresh)
        config = {
            "provider": "anthropic-oauth",
            "listen": list(self.listen),
            "state_dir": str(self.state_dir),
            "upstream_url": self.upstream_url,
            "token_url": self.token_url,
            "credentials": {"sources": ["file"], "file": str(creds)},
            "refresh": {"mode": "own"},
        }
        self.config_path.write_text(yaml.safe_dump(config))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env.update(INFERENCE_BROKER_CONFIG=str(self.config_path), PYSTRAY_BACKEND="dummy",
                   HOME=str(self.root / "home"))
        env.pop("DISPLAY", None)
        return env

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "broker", "run", "--no-tray"],
                                     env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        listen_file = self.state_dir / "listen.json"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                self.bound = list(json.loads(listen_file.read_text())["listen"])
                if len(self.bound) >= len(self.listen):
                    return self
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker did not listen within {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def port_on(self, host: str) -> int:
        """The real port bound on `host` (the config may say port 0)."""
        for entry in self.bound:
            h, _, p = entry.rpartition(":")
            if h.strip("[]") == host:
                return int(p)
        raise LookupError(f"the broker does not listen on {host}: {self.bound}")

    def cli(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `inference-broker ARGV` against this broker's config."""
        return subprocess.run([sys.executable, "-m", "broker", *argv], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def add_sandbox(self, name: str) -> str:
        out = self.cli("sandbox", "add", name)
        assert out.returncode == 0, out.stderr
        key = out.stdout.strip()
        self.issued.append(key)
        return key

    def revoke(self, name: str) -> None:
        out = self.cli("sandbox", "revoke", name)
        assert out.returncode == 0, out.stderr

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
