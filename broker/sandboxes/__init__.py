"""Sandboxes: their keys and key store, access (pause, revoke, budgets at admission), each
sandbox's Claude Code config dir, and the wiring a container engine needs."""
