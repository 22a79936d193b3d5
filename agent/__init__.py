"""The nodetune agent: the long-running daemon (sampling loop, exporter, history, systemd)."""
