"""agentctl: the command line. Each `cmd_*.py` module adds its commands via `register(app)`."""
