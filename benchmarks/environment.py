"""Everything a run needs, started in a private temp dir and stopped afterwards.

A fake token endpoint and a Claude login far from expiry (8 h), the fake upstream, the
reference proxy, nginx where installed, and the real broker (`inference-broker run
--no-tray`, normal settings, a key from `sandbox add`). Start-up time is measured on the way.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Connection, build_request
from benchmarks.phases import start_to_ready
from benchmarks.procstat import pin, pinned
from benchmarks.servers import ENV_FORBIDDEN, ENV_TOKEN, ROOT, Child, nginx_binary, start_nginx, stop_process

OAUTH_BETA = "oauth-2025-04-20"


@dataclass(frozen=True)
class Target:
    """One path to the upstream: a base URL, the auth headers it expects, its process."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int | None = None  # the proxy's process, for CPU and memory; None for direct


@dataclass
class Environment:
    """Everything running, the targets, and what the fake upstream saw (after exit)."""

    targets: list[Target]
    upstream_url: str = ""
    upstream_summary: dict[str, Any] = field(default_factory=dict)
    broker_log: Path | None = None
    startup: list[float] = field(default_factory=list)  # seconds, spawn -> answering

    async def control(self, action: str) -> None:
        """Hold or release the fake upstream's held streams."""
        conn = Connection(self.upstream_url)
        try:
            await conn.exchange(build_request(self.upstream_url, f"/__bench/{action}", {}, b"", method="GET"))
        finally:
            conn.close()


@dataclass(frozen=True)
class BrokerSpec:
    """One broker to run: its path name, what its environment adds, and optionally another
    source tree to run it from (an older version, to compare)."""

    name: str = "broker"
    env: tuple[tuple[str, str], ...] = ()
    root: Path | None = None

    def process(self, root: Path, settings: dict[str, Any]):  # noqa: ANN201 - tests.fakes BrokerProcess
        from tests.fakes.broker_process import BrokerProcess

        extra = dict(self.env)
        if self.root is not None:  # with -P, `-m broker` finds the broker on PYTHONPATH, not in the cwd
            extra["PYTHONPATH"] = os.pathsep.join([str(self.root), str(ROOT)])
        return BrokerProcess(root, dict(settings), env_extra=extra, config_flag=True)

    @property
    def python(self) -> tuple[str, ...]:
        return ("-P",) if self.root is not None else ()


@contextlib.contextmanager
def start_environment(*, proxy_cpu: int | None = None, load_cpu: int | None = None, start_runs: int = 0,
                      with_nginx: bool = True, profile_broker: Path | None = None,
                      brokers: tuple[BrokerSpec, ...] = (BrokerSpec(),)) -> Iterator[Environment]:
    """Start everything; `start_runs` extra brokers are started and stopped first, for timing.

    Each broker runs through the tests' process harness (private config, state, HOME and
    login file) and gets its own key, issued before the fake upstream starts: the upstream
    flags any of them that reaches it.
    """
    from tests.fakes.login import write_login
    from tests.fakes.threaded import serve_in_thread
    from tests.fakes.token_endpoint import FakeTokenEndpoint

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="broker-bench-")))
        endpoint = FakeTokenEndpoint()
        token_url = stack.enter_context(serve_in_thread(endpoint.make_app))
        access, refresh = endpoint.issue()
        settings = {"token_url": f"{token_url}/v1/oauth/token"}
        procs, keys = {}, {}
        for spec in brokers:
            proc = procs[spec.name] = spec.process(tmp / spec.name, settings)
            write_login(proc.creds, access, refresh, time.time() + 8 * 3600)
            keys[spec.name] = proc.add_sandbox("bench")
        first = procs[brokers[0].name]
        env = {k: v for k, v in first.env.items() if k not in (ENV_TOKEN, ENV_FORBIDDEN)}

        upstream = Child("upstream", tmp / "upstream.log",
                         {**env, ENV_TOKEN: access, ENV_FORBIDDEN: ",".join(keys.values())}, cpu=load_cpu)
        result = Environment(targets=[], upstream_url=upstream.url, broker_log=first.output)
        stack.callback(lambda: result.upstream_summary.update(upstream.stop()))
        reference = Child("reference", tmp / "reference.log", env, upstream.url, cpu=proxy_cpu)
        stack.callback(reference.stop)
        direct_auth = {"authorization": f"Bearer {access}", "anthropic-beta": OAUTH_BETA}
        result.targets += [Target("direct", upstream.url, direct_auth),
                           Target("reference", reference.url, direct_auth, reference.pid)]
        settings["upstream_url"] = upstream.url

        for i in range(start_runs):  # throwaway brokers, pinned from their first instruction
            spare = brokers[0].process(tmp / f"start{i}", settings)
            write_login(spare.creds, access, refresh, time.time() + 8 * 3600)
            spare.write_config()
            took, proc = start_to_ready(spare.argv("run", "--no-tray"), spare.state_dir / "listen.json",
                                        env=spare.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=pinned(proxy_cpu))
            stop_process(proc)
            result.startup.append(took)

        for spec in brokers:
            proc = procs[spec.name]
            proc.settings["upstream_url"] = upstream.url
            proc.write_config()
            python = spec.python
            if profile_broker is not None and spec is brokers[0]:
                python += ("-m", "cProfile", "-o", str(profile_broker))
            stack.callback(proc.stop)
            try:
                proc.start(python=python)
            except AssertionError as exc:
                raise RuntimeError(f"{spec.name} did not start: {exc}") from None
            pin(proc.proc.pid, proxy_cpu)
            result.targets.append(Target(spec.name, proc.url, {"x-api-key": keys[spec.name]}, proc.proc.pid))

        if with_nginx and nginx_binary():
            nginx, url = start_nginx(tmp / "nginx", upstream.url, proxy_cpu)
            stack.callback(stop_process, nginx)
            result.targets.append(Target("nginx", url, direct_auth, nginx.pid))
        yield result
