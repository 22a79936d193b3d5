"""nodetune's configuration: one loader for /etc/nodetune/config.toml and one module per section.

Each section is a dataclass in its own module here, registered with `@section("name")`; the loader
finds them by walking this package, so adding a section is adding one file. Nothing here imports
the rest of nodetune: diagnosis, tuners, the agent and the CLI all read their section from here.
"""
