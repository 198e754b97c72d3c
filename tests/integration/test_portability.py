"""The package imports, and the broker stops on signals, where POSIX-only pieces are missing.

Windows has no `fcntl` (and no `termios`, `pwd`, ...) and its event loops have no
`add_signal_handler`; the README says the broker runs there. Each test runs a child Python
that takes those pieces away before the broker is imported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path


from tests.fakes.broker_process import BrokerProcess
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
    require(os.name == "posix", "sends SIGTERM to a child")
    shim = NO_POSIX + textwrap.dedent("""
        import asyncio, runpy
        def unsupported(self, *args):
            raise NotImplementedError
        asyncio.AbstractEventLoop.add_signal_handler = unsupported
        asyncio.SelectorEventLoop.add_signal_handler = unsupported
        sys.argv = ["inference-broker", *sys.argv[3:]]  # after `-c CODE -m broker`
        runpy.run_module("broker", run_name="__main__")
    """)
    broker = BrokerProcess(tmp_path / "broker")
    broker.start(python=("-c", shim))
    assert broker.stop(signal.SIGTERM) == 0, broker.output_text()
    assert "NotImplementedError" not in broker.output_text()
    assert "stopping" in (broker.state_dir / "broker.log").read_text()
    assert not (broker.state_dir / "listen.json").exists() and not (broker.state_dir / "broker.sock").exists()
