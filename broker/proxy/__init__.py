"""The loopback proxy sandboxes call: guards, header rewrite, scrubbing, forwarding, the upstream
client, the connection guard and the audit trail."""
