"""The tuners: one module a tuner, named as its profile table, found by `tuners.registry`."""
