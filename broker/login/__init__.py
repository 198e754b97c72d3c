"""The Claude login: credential stores (file, Keychain, keyring), the token manager and its refresh,
Claude Code's lock protocol, and the OAuth refresh grant."""
