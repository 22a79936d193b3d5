"""Read-only probes of a GPU node; every read goes through `probes.host.Host`."""
