"""The local dashboard's pages: what the server in `broker.adapters.dashboard` shows."""
