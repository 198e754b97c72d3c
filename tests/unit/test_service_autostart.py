"""The login item the tray's checkbox writes starts the broker with the same config file."""

from pathlib import Path

from broker.adapters.configfiles import default_config_path
from broker.core.config import Config
from broker.service import Service


def test_login_item_names_a_non_default_config(tmp_path):
    cfg = Config(path=tmp_path / "work.yaml", state_dir=tmp_path / "state")
    argv = Service(cfg)._autostart_front().argv
    assert argv[-3:] == ["--config", str(tmp_path / "work.yaml"), "run"]
    assert Path(argv[0]).is_absolute() and argv[1:3] == ["-m", "broker"]


def test_login_item_for_the_default_config_needs_no_flag(tmp_path):
    cfg = Config(path=default_config_path({}), state_dir=tmp_path / "state")
    assert "--config" not in Service(cfg)._autostart_front().argv
