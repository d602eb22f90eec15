"""systemd's service notification protocol (sd_notify(3)), for Type=notify units.

A datagram "READY=1", "WATCHDOG=1" or "STOPPING=1" to the socket in $NOTIFY_SOCKET (an
abstract socket when it starts with '@'). Outside systemd there is no socket and nothing is
sent. A dozen lines of the documented protocol rather than a dependency: the PyPI packages
for it are unmaintained or need libsystemd headers.
"""

from __future__ import annotations

import asyncio
import os
import socket


def notify(message: str) -> bool:
    """Send ``message``; False when not running under systemd or when the socket cannot take
    it (gone, refused, full): as sd_notify(3), a failed notification is the manager's problem,
    never a reason for the daemon to fail (it used to end a clean shutdown with a traceback)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.connect(addr)
            s.sendall(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (from $WATCHDOG_USEC), or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() and int(usec) > 0 else None


async def watchdog_pings(interval_s: float) -> None:
    """Ping the watchdog every ``interval_s`` until cancelled; a stuck event loop stops the
    pings and systemd restarts the service."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
