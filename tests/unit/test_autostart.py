"""Launch at login: what the writers produce parses back, and the command really starts us."""

from __future__ import annotations

import configparser
import importlib.util
import plistlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from broker import __version__
from broker.autostart.writers import (
    LABEL,
    Autostart,
    AutostartError,
    broker_argv,
    desktop_entry,
    launch_agent_plist,
    run_key_value,
)
from broker.cli import main
from tests.support import require

ARGVS = [
    ["/usr/bin/python3", "-m", "broker", "run"],
    ["/opt/my apps/py thon", "-m", "broker", "--config", "/home/me/it's $HOME/a\"b`c\\d.yaml", "run"],
    ["/x/python", "--config", "100%done;(x)|y&z<w>~#*?", "", "run"],
]


def split_exec(value: str) -> list[str]:
    """Split an Exec value back into argv, reading the Desktop Entry spec independently:
    string-level backslash escapes first, then double-quoted arguments with \\" \\` \\$ \\\\."""
    unescaped, i = [], 0
    while i < len(value):  # the string-type escapes: \s \n \t \r \\
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            unescaped.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[value[i + 1]])
            i += 2
        else:
            unescaped.append(c)
            i += 1
    line = "".join(unescaped)
    args: list[str] = []
    cur: list[str] | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if c == " ":
            if cur is not None:
                args.append("".join(cur))
                cur = None
            i += 1
        elif c == '"':
            cur = cur if cur is not None else []
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    assert line[i + 1] in '"`$\\', f"bad escape in {line!r}"
                    i += 1
                cur.append(line[i])
                i += 1
            i += 1
        else:
            assert c not in "\"'\\><~|&;$*?#()`", f"reserved {c!r} outside quotes in {line!r}"
            cur = (cur or []) + [c]
            i += 1
    if cur is not None:
        args.append("".join(cur))
    return [a.replace("%%", "%") for a in args]


def read_entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    return parser["Desktop Entry"]


@pytest.mark.parametrize("argv", ARGVS)
def test_desktop_entry_keys_and_exec_round_trip(argv: list[str]) -> None:
    entry = read_entry(desktop_entry(argv))
    assert entry["Type"] == "Application"
    assert entry["Name"] == "inference-broker"
    assert entry["Terminal"] == "false"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    assert split_exec(entry["Exec"]) == argv


@pytest.mark.parametrize("argv", ARGVS)
def test_desktop_entry_exec_as_glib_reads_it(argv: list[str], tmp_path: Path) -> None:
    """GLib's own desktop-file reader (what GNOME's session uses) agrees with the spec reading."""
    require(importlib.util.find_spec("gi") is not None, "python3-gi (GLib) is not importable")
    import gi

    gi.require_version("GLib", "2.0")
    from gi.repository import GLib

    keyfile = GLib.KeyFile()
    text = desktop_entry(argv)
    keyfile.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
    line = keyfile.get_string("Desktop Entry", "Exec").replace("%%", "%")
    assert GLib.shell_parse_argv(line)[1] == argv


def test_exec_refuses_line_breaks() -> None:
    with pytest.raises(AutostartError):
        desktop_entry(["/bin/python", "a\nb"])


def test_launch_agent_plist_round_trip() -> None:
    argv = broker_argv("/Users/me/cfg.yaml", python="/opt/py/bin/python3")
    data = plistlib.loads(launch_agent_plist(argv, "/Users/me/state/launchd.log"))
    assert data["Label"] == LABEL
    assert data["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "broker", "--config", "/Users/me/cfg.yaml", "run"]
    assert data["RunAtLoad"] is True
    assert data["StandardOutPath"] == data["StandardErrorPath"] == "/Users/me/state/launchd.log"


@pytest.mark.parametrize("argv", ARGVS)
def test_run_key_value_splits_back_like_windows(argv: list[str]) -> None:
    value = run_key_value(argv)
    if not any(c in a for a in argv for c in '"\\'):
        assert shlex.split(value) == argv  # for plain args, POSIX and MSVC splitting agree
    assert value.startswith('"' + argv[0] + '"' if " " in argv[0] else argv[0])


def test_broker_argv_uses_absolute_interpreter_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = broker_argv("cfg.yaml")
    assert argv == [sys.executable, "-m", "broker", "--config", str(tmp_path / "cfg.yaml"), "run"]
    assert Path(argv[0]).is_absolute()


def test_the_login_command_really_starts_the_broker(tmp_path: Path) -> None:
    """Run the Exec line exactly as a session would, with `run` swapped for `--version`."""
    argv = broker_argv()[:-1] + ["--version"]
    assert argv[0] == sys.executable
    line = read_entry(desktop_entry(argv))["Exec"]
    out = subprocess.run(split_exec(line), capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"inference-broker {__version__}"


def test_macos_front_writes_a_valid_plist_in_a_temp_home(tmp_path: Path) -> None:
    state = tmp_path / "state"
    front = Autostart("Darwin", tmp_path, {}, argv=["/py", "-m", "broker", "run"], state_dir=state)
    assert front.location() == str(tmp_path / "Library" / "LaunchAgents" / f"{LABEL}.plist")
    assert not front.is_enabled()
    assert not (tmp_path / "Library").exists()  # constructing and asking touch nothing
    front.enable()
    assert front.is_enabled()
    data = plistlib.loads(Path(front.location()).read_bytes())
    assert data["ProgramArguments"] == ["/py", "-m", "broker", "run"]
    assert data["StandardErrorPath"] == str(state / "launchd.log") and state.is_dir()
    front.disable()
    assert not front.is_enabled()


@pytest.mark.parametrize(
    ("env", "where"),
    [({}, ".config/autostart"), ({"XDG_CONFIG_HOME": "XDG"}, "XDG/autostart"), ({"XDG_CONFIG_HOME": "rel"}, ".config/autostart")],
)
def test_linux_front_round_trips(tmp_path: Path, env: dict[str, str], where: str) -> None:
    env = {k: str(tmp_path / v) if v == "XDG" else v for k, v in env.items()}
    front = Autostart("Linux", tmp_path, env, argv=ARGVS[1])
    path = tmp_path / where / "inference-broker.desktop"
    assert front.location() == str(path)
    assert not front.is_enabled()
    front.enable()
    assert front.is_enabled() and path.is_file()
    assert split_exec(read_entry(path.read_text())["Exec"]) == ARGVS[1]
    front.enable()  # idempotent
    front.disable()
    assert not front.is_enabled() and not path.exists()
    front.disable()  # idempotent


def test_windows_location_names_the_run_key() -> None:
    front = Autostart("Windows", Path("C:/Users/me"), {})
    assert front.location() == r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run\inference-broker"
    if sys.platform != "win32":
        with pytest.raises(AutostartError, match="registry"):
            front.is_enabled()


def test_cli_enable_status_disable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("INFERENCE_BROKER_CONFIG", raising=False)
    path = tmp_path / "xdg" / "autostart" / "inference-broker.desktop"
    if sys.platform == "darwin":
        pytest.skip("the CLI writes a LaunchAgent here; covered by the macOS front test")

    assert main(["autostart", "status"]) == 0
    assert "off" in capsys.readouterr().out
    (tmp_path / "b.yaml").write_text("")  # the login item's config must exist (it is read now)
    assert main(["--config", str(tmp_path / "b.yaml"), "autostart", "enable"]) == 0
    assert "on" in capsys.readouterr().out
    assert split_exec(read_entry(path.read_text())["Exec"]) == broker_argv(tmp_path / "b.yaml")
    assert main(["autostart", "status"]) == 0
    assert "Launch at login: on" in capsys.readouterr().out
    assert main(["autostart", "disable"]) == 0
    assert not path.exists()
