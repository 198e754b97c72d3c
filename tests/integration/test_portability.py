"""The package imports, and the broker stops on signals, where POSIX-only pieces are missing.

Windows has no `fcntl` (and no `termios`, `pwd`, ...) and its event loops have no
`add_signal_handler`; the README says the broker runs there. Each test runs a child Python
that takes those pieces away before the broker is imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.fakes.eventually import eventually
from tests.support import require

ROOT = Path(__file__).resolve().parents[2]
NO_POSIX = 'import sys\nfor _m in ("fcntl", "termios", "pwd", "grp", "resource"):\n    sys.modules[_m] = None\n'


def child(code: str, *argv: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen[str]:
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", NO_POSIX + textwrap.dedent(code), *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_every_module_and_the_cli_import_without_posix_modules() -> None:
    code = """
        import importlib, pkgutil, broker
        names = sorted(m.name for m in pkgutil.walk_packages(broker.__path__, "broker.") if m.name != "broker.__main__")
        for name in names:
            importlib.import_module(name)
        print(len(names))
        from broker.cli import main
        raise SystemExit(main(["--version"]))
    """
    out, err = child(code).communicate(timeout=60)
    assert "ModuleNotFoundError" not in err and "Traceback" not in err, err
    count, version = out.splitlines()
    assert int(count) >= 50 and version.startswith("inference-broker ")


def test_the_broker_stops_on_sigterm_where_the_loop_has_no_signal_handlers(tmp_path: Path) -> None:
    """`add_signal_handler` raises NotImplementedError, as on Windows' event loops."""
    require(hasattr(signal, "SIGTERM") and os.name == "posix", "sends SIGTERM to a child")
    config = tmp_path / "broker.yaml"
    state = tmp_path / "state"
    config.write_text(yaml.safe_dump({"listen": ["127.0.0.1:0"], "state_dir": str(state),
                                      "credentials": {"sources": ["file"], "file": str(tmp_path / "none.json")}}))
    code = """
        import asyncio
        def unsupported(self, *args):
            raise NotImplementedError
        asyncio.AbstractEventLoop.add_signal_handler = unsupported
        asyncio.SelectorEventLoop.add_signal_handler = unsupported
        from broker.cli import main
        raise SystemExit(main(sys.argv[1:]))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("INFERENCE_BROKER_CONFIG", "DISPLAY")}
    env["HOME"] = str(tmp_path / "home")
    proc = child(code, "--config", str(config), "run", "--no-tray", env=env)
    try:
        listen = state / "listen.json"
        eventually(lambda: listen.exists() or proc.poll() is not None, 20, "the broker to listen")
        assert proc.poll() is None, proc.communicate()[1]
        assert json.loads(listen.read_text())["listen"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping" in (state / "broker.log").read_text() and not listen.exists()
