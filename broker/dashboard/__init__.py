"""The local dashboard's pages: what the server in `broker.dashboard.server` shows."""
