"""`inference-broker login --setup-token | --api-key | --logout`: the broker's own secret.

A token from `claude setup-token` lives about a year, needs no refresh, and shares no
refresh chain with the host's Claude Code. It is read from stdin (never argv, which other
users can see) and kept in the system keyring.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from broker.config.files import find_profile, profile_dirs
from broker.login.keychain_store import SecretStore
from broker.cli.common import config_of
from broker.common.errors import BrokerError
from broker.common.redact import fingerprint
from broker.login.source_setup import setup_token_marker, setup_token_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("login", help="store a long-lived token (from `claude setup-token`) or an API key")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--setup-token", action="store_true", help="read a `claude setup-token` token from stdin")
    g.add_argument("--api-key", action="store_true", help="read an Anthropic API key from stdin (provider `anthropic`)")
    g.add_argument("--logout", action="store_true", help="forget the stored setup token")
    p.set_defaults(func=main)


def read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise BrokerError("expected one token on standard input, with no spaces")
    return value


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    marker = setup_token_marker(config)
    if args.logout:
        setup_token_store().delete()
        marker.unlink(missing_ok=True)
        print("setup token forgotten; the broker uses Claude Code's login again (after a restart)")
        return 0
    if args.api_key:
        profile = find_profile("anthropic", profile_dirs())
        key = read_secret("Anthropic API key: ")
        if not key.startswith("sk-ant-api"):
            raise BrokerError("that does not look like an Anthropic API key (sk-ant-api…)")
        SecretStore(profile.keyring_service or "inference-broker", profile.keyring_username or "api-key").set(key)
        print(f"API key stored in the keyring (fingerprint {fingerprint(key)}); set `provider: anthropic` to use it")
        return 0
    token = read_secret("Token from `claude setup-token`: ")
    if not token.startswith("sk-ant-oat"):
        raise BrokerError("that does not look like a Claude OAuth token (sk-ant-oat…); run `claude setup-token`")
    setup_token_store().set(token)
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    marker.touch(mode=0o600)
    print(f"setup token stored in the keyring (fingerprint {fingerprint(token)}); the broker uses it ahead of "
          "Claude Code's login from its next start")
    return 0
