from pathlib import Path

import pytest

from broker.config.files import load_config
from broker.config.settings import DEFAULT_LISTEN, parse_config
from broker.common.errors import ConfigError


def test_empty_file_means_defaults():
    c = parse_config("", "c.yaml")
    assert c.listen == DEFAULT_LISTEN and c.provider == "anthropic-oauth" and c.refresh.mode == "own"
    assert c.proxy.max_body_bytes == 32 * 1024 * 1024


def test_full_config_is_read(tmp_path):
    c = parse_config("""
provider: claude-plan
listen: ["127.0.0.1:9000", "docker:9001"]
state_dir: state
upstream_url: http://127.0.0.1:1234
token_url: http://127.0.0.1:1234/v1/oauth/token
credentials: {sources: [file], file: /x/.credentials.json}
refresh: {mode: follow, ahead_fraction: 0.2, ahead_min_seconds: 60}
proxy: {allowed_hosts: [Broker.Local], max_body_bytes: 1024}
log_level: debug
""", "c.yaml", tmp_path / "c.yaml")
    assert c.listen == ("127.0.0.1:9000", "docker:9001")
    assert c.state_dir == tmp_path / "state"  # relative to the config file
    assert c.credentials.sources == ("file",) and c.credentials.file == Path("/x/.credentials.json")
    assert (c.refresh.mode, c.refresh.ahead_fraction, c.refresh.ahead_min_seconds) == ("follow", 0.2, 60)
    assert c.proxy.allowed_hosts == ("broker.local",) and c.proxy.max_body_bytes == 1024
    assert c.control_socket == tmp_path / "state" / "broker.sock"


@pytest.mark.parametrize("text, message", [
    ("listen: 8765", "c.yaml: listen: must be a list"),
    ("lisen: []", "c.yaml: lisen: unknown key"),
    ("refresh: {mode: fllow}", "refresh.mode: must be one of own, follow"),
    ("refresh: {modee: own}", "refresh.modee: unknown key"),
    ("refresh: {ahead_fraction: 1.5}", "refresh.ahead_fraction: must be below 1"),
    ("proxy: {max_body_bytes: -1}", "proxy.max_body_bytes: must be a positive number"),
    ("proxy: {max_body_bytes: yes}", "proxy.max_body_bytes: must be .* got a boolean"),
    ("credentials: {sources: [vault]}", "unknown source 'vault'"),
    ("upstream_url: ftp://x", "upstream_url: must be an http"),
    ("listen: ['nohost']", "listen"),
    ("[1, 2]", "must be a mapping"),
    ("a: [", "not valid YAML"),
])
def test_bad_config_names_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "c.yaml")


def test_missing_default_file_is_fine_but_missing_explicit_file_is_not(tmp_path):
    assert load_config(env={"XDG_CONFIG_HOME": str(tmp_path)}).listen == DEFAULT_LISTEN
    with pytest.raises(ConfigError, match="not found"):
        load_config(env={"INFERENCE_BROKER_CONFIG": str(tmp_path / "nope.yaml")})


def test_usage_settings():
    from broker.config.settings import parse_config
    from broker.common.errors import ConfigError

    c = parse_config("usage: {retention_days: 30, stop_at_percent: 90}", "c.yaml")
    assert c.usage.retention_days == 30 and c.usage.stop_at_percent == 90.0
    assert parse_config("{}", "c.yaml").usage.stop_at_percent is None
    for bad in ("usage: {stop_at_percent: 0}", "usage: {stop_at_percent: 101}", "usage: {retention_days: -1}",
                "usage: {nope: 1}"):
        try:
            parse_config(bad, "c.yaml")
        except ConfigError as exc:
            assert "c.yaml: usage." in exc.message
        else:
            raise AssertionError(bad)
