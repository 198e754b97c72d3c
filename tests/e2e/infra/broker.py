"""The real broker as a separate process (`inference-broker run --no-tray`), for sandboxes to use.

It gets a private config, state dir and Claude login (a credentials file holding a token the
fake upstream accepts), and is stopped with SIGTERM like a user's session would stop it. Tests
learn the real ports from `state_dir/listen.json` (see tests/fakes/broker_process.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import yaml

from tests.fakes import broker_process
from tests.fakes.login import write_login

if TYPE_CHECKING:
    from tests.fakes.token_endpoint import FakeTokenEndpoint
    from tests.fakes.upstream import FakeAnthropic


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


class BrokerProcess(broker_process.BrokerProcess):
    """The shared harness with a login the fake upstream accepts and the tray's dummy backend."""

    def __init__(self, root: Path, listen: Sequence[str] | None, upstream_url: str, token_url: str, access: str,
                 refresh: str, issued: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        config = {"provider": "anthropic-oauth", "upstream_url": upstream_url, "token_url": token_url,
                  "refresh": {"mode": "own"}}
        if listen is not None:  # None: no `listen` in the config, the default a new user has
            config["listen"] = list(listen)
        super().__init__(root, config, env_extra={"PYSTRAY_BACKEND": "dummy", **(env or {})},
                         issued=issued if issued is not None else [])
        self.access, self.refresh = access, refresh
        self.default_listen = listen is None

    def write_config(self) -> Path:
        path = super().write_config()
        if self.default_listen:  # the shared harness always writes one: take it out again
            doc = yaml.safe_load(path.read_text())
            doc.pop("listen", None)
            path.write_text(yaml.safe_dump(doc))
        return path

    def prepare(self) -> None:
        """Called with the config and login written, just before the process starts (a broker
        run as another user hands its files over here)."""

    @property
    def log_path(self) -> Path:
        return self.output

    def start(self, *args: str, python: Sequence[str] = (), timeout: float = 30.0) -> BrokerProcess:
        write_login(self.creds, self.access, self.refresh, time.time() + 8 * 3600)
        if not self.config_path.exists():
            self.write_config()
        self.prepare()
        super().start(*args, python=python, timeout=timeout)
        return self

    def sandbox_dir(self, name: str) -> Path:
        return self.state_dir / "sandboxes" / name

    def sandbox_key(self, name: str) -> str:
        """The key `docker-args --new/--rotate` wrote into the sandbox's Claude Code dir."""
        doc = json.loads((self.sandbox_dir(name) / ".credentials.json").read_text())
        key = doc["claudeAiOauth"]["accessToken"]
        self.issued.append(key)  # the fake upstream flags it if it ever arrives there
        return key

    def revoke(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.cli("sandbox", "revoke", name, check=True)

    def log_text(self) -> str:
        return self.output_text()
