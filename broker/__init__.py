"""inference-broker: lend a Claude subscription to local sandboxes, never its token."""

__version__ = "0.1.0"
