"""A client of the running daemon's control API, for the operator verbs (``deskd status``,
``halt``, ``resume``, ``flatten``, ``reconcile --daemon``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class DaemonUnreachable(OSError):
    """The daemon's API did not answer (not running, wrong --api, network)."""


def api_request(base_url: str, method: str, path: str, body: dict | None = None,
                token: str | None = None, timeout_s: float = 60.0) -> tuple[int, dict]:
    """(HTTP status, JSON body) of one call to the daemon's API at ``base_url``. A reply
    that is not JSON becomes ``{"error": reason}``. Raises DaemonUnreachable."""
    url = base_url.rstrip("/") + path
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": e.reason}
    except (urllib.error.URLError, OSError) as e:
        raise DaemonUnreachable(f"cannot reach the daemon at {base_url}: {getattr(e, 'reason', e)}") from None
