"""`make test` stopped by SIGTERM or SIGHUP tears down what its fixtures started, as on Ctrl-C.

A child pytest runs a test whose fixture starts a process in a session of its own (as dockerd,
tmux and containers are: the signal to the test run does not reach them), and records its
teardown; the test waits to be stopped. The signal goes to the whole process group, as
`timeout` and a closing terminal send it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakes.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]

CHILD_TEST = textwrap.dedent('''
    import os, signal, subprocess, sys, time
    from pathlib import Path
    import pytest

    FILES = Path(os.environ["SIGNAL_TEST_FILES"])

    @pytest.fixture
    def engine():
        proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"],
                                start_new_session=True)
        (FILES / "pid").write_text(str(proc.pid))
        yield proc
        (FILES / "tearing-down").write_text("")
        if os.environ.get("SIGNAL_TEST_HOLD"):  # until the second signal has been sent
            while not (FILES / "go-on").exists():
                time.sleep(0.02)
        proc.kill()
        proc.wait()
        (FILES / "torn-down").write_text("")

    def test_runs_until_stopped(engine):
        (FILES / "ready").write_text("")
        signal.pause()
''')

# As a shell in a terminal starts it: both signals at their defaults (the outer run may not be).
LAUNCH = ("import signal, sys, pytest\n"
          "for s in (signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)\n"
          "sys.exit(pytest.main(sys.argv[1:]))\n")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def leftovers():
    """Whatever a failing run leaves behind is stopped here."""
    runs: list[subprocess.Popen[str]] = []
    pids: list[int] = []
    yield runs, pids
    for run in runs:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_child_run(tmp_path: Path, leftovers, hold: bool) -> tuple[subprocess.Popen[str], Path, int]:
    files = tmp_path / "files"
    files.mkdir()
    test = tmp_path / "test_child.py"
    test.write_text(CHILD_TEST)
    env = {**os.environ, "SIGNAL_TEST_FILES": str(files), "PYTHONPATH": str(ROOT)}
    if hold:
        env["SIGNAL_TEST_HOLD"] = "1"
    run = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(test)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    leftovers[0].append(run)
    eventually(lambda: (files / "ready").exists() or run.poll() is not None, timeout=60,
               what="the child test running")
    assert run.poll() is None, run.communicate()[0]
    pid = int((files / "pid").read_text())
    leftovers[1].append(pid)
    assert alive(pid)
    return run, files, pid


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stopped_run_tears_its_fixtures_down(tmp_path: Path, leftovers, signum: int) -> None:
    run, files, pid = start_child_run(tmp_path, leftovers, hold=False)
    os.killpg(run.pid, signum)
    out, _ = run.communicate(timeout=60)
    assert (files / "torn-down").exists(), out
    assert not alive(pid), out
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out
    assert f"stopped by {signal.Signals(signum).name}" in out


def test_a_second_signal_does_not_cut_the_teardown_short(tmp_path: Path, leftovers) -> None:
    """`timeout make test`: timeout signals the group and make passes SIGTERM on as well."""
    run, files, pid = start_child_run(tmp_path, leftovers, hold=True)
    os.killpg(run.pid, signal.SIGTERM)
    eventually(lambda: (files / "tearing-down").exists(), timeout=30, what="teardown started")
    os.killpg(run.pid, signal.SIGTERM)
    os.killpg(run.pid, signal.SIGHUP)
    (files / "go-on").write_text("")
    out, _ = run.communicate(timeout=60)
    assert (files / "torn-down").exists(), out
    assert not alive(pid), out
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out
