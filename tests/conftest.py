"""The test packages (tests/<package>/) import their shared helpers as `tests.support.*`: pytest puts
the repository on sys.path for the `tests` package, and nothing else is needed here."""
