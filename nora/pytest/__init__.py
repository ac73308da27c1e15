"""The pytest face of NORA, one concern per module: options, cases (fixtures' objects),
workers (xdist: devices, ports, session directory) and the session reporter.
``nora/pytest_plugin.py`` declares the hooks and fixtures and delegates here."""
