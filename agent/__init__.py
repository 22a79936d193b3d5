"""nodetune's surfaces: the CLI, diagnosis and configuration."""
