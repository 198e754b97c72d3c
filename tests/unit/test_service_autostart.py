"""One login item: the tray's checkbox and `autostart enable` write the same thing."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from broker.autostart.writers import Autostart
from broker.config.files import default_config_path, load_config
from broker.cli import main
from broker.status.actions import Action
from broker.config.settings import Config
from broker.runtime.service import Service


def test_login_item_names_a_non_default_config(tmp_path):
    cfg = Config(path=tmp_path / "work.yaml", state_dir=tmp_path / "state")
    argv = Autostart.for_config(cfg).argv
    assert argv[-3:] == ["--config", str(tmp_path / "work.yaml"), "run"]
    assert Path(argv[0]).is_absolute() and argv[1:3] == ["-m", "broker"]


def test_login_item_for_the_default_config_needs_no_flag(tmp_path):
    cfg = Config(path=default_config_path({}), state_dir=tmp_path / "state")
    assert "--config" not in Autostart.for_config(cfg).argv


@pytest.mark.parametrize("system", ["Linux", "Darwin"])
async def test_tray_checkbox_and_cli_write_the_same_login_item(tmp_path, monkeypatch, system):
    """Regression: the CLI left out the config's state_dir (where a LaunchAgent logs) and the
    tray left out a --config that was the default path; a login item depended on which was used."""
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("INFERENCE_BROKER_CONFIG", raising=False)
    config_file = tmp_path / "work.yaml"
    config_file.write_text(f"state_dir: {tmp_path / 'state'}\n")
    item = Autostart.for_config(load_config(config_file))
    where = Path(item.location())

    assert main(["--config", str(config_file), "autostart", "enable"]) == 0
    from_cli = where.read_bytes()
    assert main(["--config", str(config_file), "autostart", "disable"]) == 0 and not where.exists()

    await Service(load_config(config_file)).perform(Action.SET_AUTOSTART, "on")
    assert where.read_bytes() == from_cli
    assert str(tmp_path / "state").encode() in from_cli or system == "Linux"  # launchd's log goes to state_dir
