"""Debian's Chromium for the browser tests (the labeling page, the dashboard)."""

from __future__ import annotations

import os
import shutil

import pytest

# Headless, offline and quiet: no GPU, no QUIC, no background updates or sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    """Chromium's path; skip when Playwright/Chromium are missing, but fail in CI."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright for Python is not installed (pip install playwright)"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if reason is None and not os.path.exists(chromium):
        reason = "Chromium is not installed (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs both, so this must not happen there")
        pytest.skip(reason)
    return chromium
