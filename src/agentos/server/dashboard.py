"""The dashboard page (placeholder until the live page lands)."""
PAGE = "<!doctype html><title>agentos</title><p>agentos daemon</p>"
