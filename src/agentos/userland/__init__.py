"""Ring 2: libraries built on syscalls only (supervisors, agents, ...)."""
