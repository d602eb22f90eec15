"""Shared test helpers.

System tools (promtool, PostgreSQL's server binaries, systemd-analyze) come from Debian
packages that `.ci/run` installs; tests never install anything. Locally a missing tool skips
its tests with the reason; under ``DESKD_REQUIRE_SYSTEM_TOOLS=1`` (set by `.ci/run`) it
fails them instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import os

import pytest


def require_tool(found: str | None, what: str, package: str) -> str:
    """``found`` (a path), or skip (locally) / fail (in CI) naming the Debian package."""
    if found:
        return found
    msg = f"{what} not found: apt-get install {package} (.ci/run installs it)"
    if os.environ.get("DESKD_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)
