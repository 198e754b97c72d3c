"""mitmdump on 127.0.0.1:0, routing Anthropic's hosts to a local fake (see mitm_addon.py).

Claude Code honours `HTTPS_PROXY` and trusts the proxy's CA through `NODE_EXTRA_CA_CERTS`,
so the real CLI talks to the fake token endpoint and API while believing it reached
platform.claude.com and api.anthropic.com.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ADDON = Path(__file__).with_name("mitm_addon.py")


@dataclass
class Mitm:
    port: int
    ca_cert: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        return {"HTTPS_PROXY": self.url, "https_proxy": self.url, "NODE_EXTRA_CA_CERTS": str(self.ca_cert)}

    def hosts_seen(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@contextlib.contextmanager
def running_mitm(mitmdump: Path, site: str, workdir: Path, timeout: float = 60.0) -> Iterator[Mitm]:
    """Start mitmdump routing to `site` ("127.0.0.1:PORT"); stop it (by its pid) on exit."""
    confdir, log, out = workdir / "mitm-conf", workdir / "mitm-hosts.log", workdir / "mitmdump.out"
    confdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FAKE_SITE": site, "FAKE_SITE_LOG": str(log)}
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(mitmdump), "--listen-host", "127.0.0.1", "-p", "0",
                                 "--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
                                 "-s", str(ADDON)], stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            m = re.search(r"proxy listening at 127\.0\.0\.1:(\d+)", out.read_text(errors="replace"))
            if m:
                port = int(m.group(1))
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mitmdump did not start: {out.read_text(errors='replace')[-2000:]}")
            else:
                time.sleep(0.05)
        yield Mitm(port, confdir / "mitmproxy-ca-cert.pem", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
