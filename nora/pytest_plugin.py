"""pytest plugin entry point (filled in by the pytest-harness work)."""
