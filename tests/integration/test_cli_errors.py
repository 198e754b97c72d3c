"""The CLI run by a user who cannot read the state dir: a clear error, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import require_root, require_tools

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="cli-errors-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["sandbox", "list"]])
def test_another_users_state_dir_gives_a_clear_error(shared_dir: Path, command: list[str]):
    require_root()  # to run the CLI as another user
    require_tools("setpriv")
    tmp_path = shared_dir
    state = tmp_path / "state"
    state.mkdir(mode=0o700)  # root's, like another user's broker
    (state / "broker.db").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {state}\ncredentials:\n  sources: [file]\n  file: {tmp_path}/none.json\n")
    config.chmod(0o644)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-m", "broker", "--config", str(config), *command],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Permission denied: cannot access ") and str(state) in done.stderr
