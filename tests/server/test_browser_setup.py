"""How the browser tests find their Chromium, and the setup script that provides one:
Debian's first, else the one unpacked from npm's @sparticuz/chromium into the venv; a
machine with neither gets a reason, never a failed setup."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .chromium import find_chromium

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup-browser.sh"


def _fake_chrome(prefix: Path) -> Path:
    chrome = prefix / "chromium" / "chrome"
    chrome.parent.mkdir(parents=True)
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    return chrome


def test_the_system_chromium_is_preferred_to_the_bundled_one(tmp_path: Path) -> None:
    _fake_chrome(tmp_path)
    assert find_chromium(str(tmp_path), which=lambda name: "/usr/bin/chromium") == "/usr/bin/chromium"


def test_the_bundled_chromium_is_used_without_a_system_one(tmp_path: Path) -> None:
    if os.path.exists("/usr/bin/chromium"):
        return  # Debian's is installed here: it wins, as the other test shows
    chrome = _fake_chrome(tmp_path)
    assert find_chromium(str(tmp_path), which=lambda name: None) == str(chrome)
    chrome.chmod(0o644)  # not executable: not a browser
    assert find_chromium(str(tmp_path), which=lambda name: None) is None


def test_setup_without_npm_or_chromium_says_why_and_does_not_fail(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    r = subprocess.run(["/bin/bash", str(SCRIPT), str(tmp_path / "venv")], env={"PATH": str(empty)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "browser tests will skip" in r.stdout and not (tmp_path / "venv" / "chromium").exists()
