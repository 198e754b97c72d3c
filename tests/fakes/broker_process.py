"""The real broker in its own process (`python -m broker run`), driven as a user drives it.

Each one gets a private root: its config file, state dir, HOME and Claude login file, so it
never sees this machine's own login, config or keyring settings. Tests reach it only as a
person can: the CLI, signals, HTTP on the ports it reports in `state_dir/listen.json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.runtime import control_socket
from tests.fakes.eventually import eventually

REPO = Path(__file__).resolve().parents[2]
# Variables that would point the broker (or an SDK it starts) at this machine's own setup.
HOST_ENV = ("ANTHROPIC_", "CLAUDE_", "INFERENCE_BROKER_CONFIG", "PYSTRAY_BACKEND", "DISPLAY", "WAYLAND_DISPLAY",
            "XDG_CONFIG_HOME")


@dataclass
class BrokerProcess:
    root: Path
    settings: dict[str, Any] = field(default_factory=dict)  # config entries, over `listen` 127.0.0.1:0 + `creds`
    env_extra: dict[str, str] = field(default_factory=dict)  # e.g. a desktop's DISPLAY and session bus
    config_flag: bool = False  # pass `--config FILE` instead of setting $INFERENCE_BROKER_CONFIG
    executable: str = sys.executable  # another Python (e.g. one without some package) runs it
    nofile: int | None = None  # an fd limit for the process (soft and hard), e.g. to flood it
    issued: list[str] = field(default_factory=list)  # every sandbox key handed out (must never leak)
    proc: subprocess.Popen[bytes] | None = None
    bound: list[str] = field(default_factory=list)  # "host:port" as the broker reports them

    # -- its private files
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def creds(self) -> Path:
        """The Claude login file it reads (write one with tests.fakes.login.write_login)."""
        return self.root / "claude" / ".credentials.json"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def output(self) -> Path:
        """Everything the process printed (stdout and stderr)."""
        return self.root / "broker.out"

    @property
    def listen(self) -> list[str]:
        return list(self.settings.get("listen", ["127.0.0.1:0"]))

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {"listen": self.listen, "state_dir": str(self.state_dir),
                  "credentials": {"sources": ["file"], "file": str(self.creds)}, **self.settings}
        self.config_path.write_text(yaml.safe_dump(config))
        return self.config_path

    # -- commands
    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(HOST_ENV)}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        if not self.config_flag:
            env["INFERENCE_BROKER_CONFIG"] = str(self.config_path)
        env.update(self.env_extra)
        return env

    def argv(self, *args: str, python: Sequence[str] = ()) -> list[str]:
        """`inference-broker ARGS`; `python` goes before `-m broker` (e.g. `-m cProfile -o F`)."""
        config = ["--config", str(self.config_path)] if self.config_flag else []
        return [self.executable, *python, "-m", "broker", *config, *args]

    def cli(self, *args: str, check: bool = False, input: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        if not self.config_path.exists():
            self.write_config()
        done = subprocess.run(self.argv(*args), env=self.env, cwd=REPO, input=input, capture_output=True,
                              text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def add_sandbox(self, name: str) -> str:
        key = self.cli("sandbox", "add", name, check=True).stdout.strip()  # shown once, by design
        assert key.startswith("sk-ib-"), "sandbox add printed no key"
        self.issued.append(key)
        return key

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json", check=True).stdout)

    # -- the process
    def start(self, *args: str, python: Sequence[str] = (), timeout: float = 30.0) -> BrokerProcess:
        """Start `run --no-tray` (or `args`) and wait until every `listen` entry is bound and the
        control socket answers."""
        if not self.config_path.exists():
            self.write_config()
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(self.argv(*(args or ("run", "--no-tray")), python=python), env=self.env,
                                         cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=self._limit_fds if self.nofile is not None else None)
        try:
            eventually(self._ready, timeout, "the broker to listen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.output_text()[-3000:]}") from None
        return self

    def _limit_fds(self) -> None:  # in the child, before exec
        import resource  # POSIX only, like the limit itself

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the broker exited ({self.proc.returncode}):\n{self.output_text()[-3000:]}")
        try:
            self.bound = list(json.loads((self.state_dir / "listen.json").read_text())["listen"])
        except (OSError, ValueError, KeyError):
            return False
        return len(self.bound) >= len(self.listen) and control_socket.is_running(self.state_dir / "broker.sock")

    @property
    def port(self) -> int:
        """The port of the first address it bound."""
        return int(self.bound[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://{self.bound[0]}"

    def port_on(self, host: str) -> int:
        """The real port bound on `host` (the config may say port 0)."""
        for entry in self.bound:
            h, _, p = entry.rpartition(":")
            if h.strip("[]") == host:
                return int(p)
        raise LookupError(f"the broker does not listen on {host}: {self.bound}")

    def output_text(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop it as a session would (SIGTERM); SIGKILL if it does not go. Its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
