"""Suite-wide plugins: the live + replay conformance machinery (tests/support/conformance.py)."""
pytest_plugins = ["tests.support.conformance"]
