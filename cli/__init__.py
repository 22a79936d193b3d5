"""The `nodetune` command line: one module per command group, the renderers and the one error path."""
