"""Which headless Chromium the browser tests drive: Debian's `chromium` first, else the one
scripts/setup-browser.sh unpacked from npm's @sparticuz/chromium into the venv
(`<sys.prefix>/chromium/chrome`). Never a browser Playwright downloads itself."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Flags for a headless browser run as root in a container: no sandbox (it needs user
# namespaces), no GPU, nothing that reaches the network by itself.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def find_chromium(prefix: str | None = None, which: object = shutil.which) -> str | None:
    """The browser to launch, or None when neither source is installed."""
    system = which("chromium") if callable(which) else None  # type: ignore[operator]
    if system:
        return str(system)
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    bundled = Path(prefix if prefix is not None else sys.prefix) / "chromium" / "chrome"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return None


CHROMIUM = find_chromium()
MISSING = ("no headless Chromium: Debian's chromium is not installed and "
           "scripts/setup-browser.sh did not unpack @sparticuz/chromium into the venv (make browser)")
