"""What the broker process does for its memory: malloc settings where glibc is, and the
modules it needs only at start-up (each case in a fresh interpreter)."""

from __future__ import annotations

import platform
import subprocess
import sys

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_malloc_settings_take_on_glibc_only() -> None:
    out = run("from broker.runtime.malloc_tuning import limit_malloc_arenas, pin_malloc_thresholds; "
              "print(limit_malloc_arenas(), pin_malloc_thresholds())")
    assert out.split() == [str(GLIBC)] * 2


def test_the_run_command_imports_no_yaml_until_it_reads_the_config() -> None:
    out = run("import sys; from broker.cli import build_parser; build_parser('run'); from broker.runtime import runner; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('yaml', 'broker.cli')))")
    assert out == "[]"


def test_yaml_is_forgotten_after_start_up_and_comes_back_when_needed() -> None:
    out = run("import sys; from broker.runtime import runner; runner.keep_out_libyaml(); "
              "from broker.config.settings import parse_config; from broker.sandboxes.engine_args import Wiring, compose_snippet; "
              "c = parse_config('listen: [\"127.0.0.1:0\"]\\nlog_level: debug\\n', 'config.yaml'); "
              "runner.forget_yaml(); print(c.log_level, sorted(m for m in sys.modules if m.startswith('yaml'))); "
              "print(compose_snippet(Wiring('http://inference.local:1', '/s')).splitlines()[0])")
    assert out.splitlines() == ["debug ['yaml._yaml']", "services:"]


def test_yaml_errors_still_name_the_file_after_a_forget() -> None:
    out = run("from broker.runtime import runner; from broker.config.settings import parse_config; "
              "from broker.common.errors import ConfigError; runner.keep_out_libyaml(); parse_config('log_level: info', 'x'); "
              "runner.forget_yaml()\n"
              "try: parse_config('listen: [', 'config.yaml')\n"
              "except ConfigError as exc: print(exc.message.split(' (')[0])")
    assert out == "config.yaml: not valid YAML"
