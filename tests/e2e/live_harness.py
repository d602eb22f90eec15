"""A fake v20 broker in a thread and the real `deskd run --broker http` against it.

Time only moves when a test advances the fake, and the daemon only polls when told to
(``POST /poll``, its timer set to an hour): :meth:`Live.advance` releases a bar time, then
runs one whole tick, so no bar is released while a tick is in flight and every step is
deterministic.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from deskd.testing.fake_v20 import FakeV20
from tests.conftest import EXAMPLE, deskd_cmd
from tests.fake_broker import running

SAMPLE = EXAMPLE.parent / "../../data/sample"
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
TF = 900
API_TOKEN = "live-test-api-token"


def write_live_config(d: Path, bars: int, **risk) -> Path:
    """The example desk on the first ``bars`` bars of the sample, with a cost-free scenario M
    (the fake fills at mid), wide drawdown limits and a 24-bar time stop, so a few hundred
    bars give dozens of trades. ``risk`` overrides risk keys."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    for sym in SYMBOLS:
        with gzip.open(SAMPLE / f"{sym}_M15.csv.gz", "rt") as fh:
            lines = fh.readlines()[: bars + 1]
        (d / f"{sym}.csv").write_text("".join(lines))
        cfg["data"]["files"][sym] = str(d / f"{sym}.csv")
    cfg["desk"] = "live"
    cfg["costs"] = {"spread_pips": {s: 0 for s in SYMBOLS}, "default_spread_pips": 0,
                    "slippage": {"slip_base_pips": 0, "slip_k_pips": 0},
                    "scenarios": {"M": {"spread_mult": 1.0, "slippage_mult": 0}}}
    cfg["risk"].update(dd_day_limit_frac=0.5, dd_week_limit_frac=0.5, max_hold_bars=24, **risk)
    path = d / "live.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Live:
    """One fake broker (``broker``, served on ``port``) and at most one daemon at a time."""

    def __init__(self, cfg: Path, tmp: Path, release: int = 0):
        self.cfg = cfg
        self.tmp = tmp
        conf = yaml.safe_load(cfg.read_text())
        self.broker = FakeV20.from_files({s: conf["data"]["files"][s] for s in SYMBOLS}, conf["data"]["timezone"],
                                         TF, state_file=str(tmp / "fake.json"))
        self.broker.advance(release)
        self.db = tmp / "desk.db"
        (tmp / "api.token").write_text(API_TOKEN)
        self.proc: subprocess.Popen | None = None
        self.api_port = free_port()
        self.port: int | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Live:
        self.port = self._stack.enter_context(running(self.broker))
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stack.close()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DESKD_V20_URL": f"http://127.0.0.1:{self.port}",
                "DESKD_V20_ACCOUNT": self.broker.account_id, "DESKD_V20_TOKEN": self.broker.token}

    # -- the daemon ---------------------------------------------------------------------------
    def start(self, *extra: str) -> None:
        self.log = open(self.tmp / "daemon.log", "a")
        self.proc = subprocess.Popen(
            deskd_cmd() + ["run", "--config", str(self.cfg), "--broker", "http", "--scenario", "M",
                           "--store", str(self.db), "--poll-interval", "3600", "--reconcile-every", "0",
                           "--broker-timeout", "0.5", "--api-port", str(self.api_port),
                           "--token-file", str(self.tmp / "api.token"), *extra],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"deskd run exited {self.proc.returncode}:\n{self.daemon_log()}")
            with contextlib.suppress(OSError):
                if self.status()["broker"]["ticks"] >= 1:
                    return
            time.sleep(0.05)
        raise AssertionError(f"deskd run did not come up:\n{self.daemon_log()}")

    def stop(self) -> None:
        """SIGTERM: the daemon finishes its tick, commits and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.daemon_log()
        self.proc = None

    def daemon_log(self) -> str:
        return (self.tmp / "daemon.log").read_text()

    def status(self) -> dict:
        return _http("GET", f"http://127.0.0.1:{self.api_port}/status")[1]

    def action(self, path: str, body: dict) -> tuple[int, dict]:
        return _http("POST", f"http://127.0.0.1:{self.api_port}{path}", body, API_TOKEN)

    def sync(self) -> dict:
        """One whole daemon tick (reconciliation included), now; returns /status."""
        code, reply = self.action("/poll", {"reason": "test step"})
        assert code == 200, (reply, self.daemon_log()[-3000:])
        return self.status()

    # -- the broker -----------------------------------------------------------------------------
    def admin(self, path: str, body: dict) -> dict:
        status, reply = _http("POST", f"http://127.0.0.1:{self.port}/admin/{path}", body)
        assert status == 200, reply
        return reply

    def advance(self, n: int = 1) -> dict | None:
        """Release ``n`` bar times, one at a time, with a daemon tick after each; the last /status."""
        st = None
        for _ in range(n):
            self.admin("advance", {"bars": 1})
            st = self.sync()
        return st

    def advance_until(self, cond, limit: int = 400) -> dict:
        """Advance bar by bar until ``cond(status)``; fails after ``limit`` bars."""
        for _ in range(limit):
            st = self.advance(1)
            if cond(st):
                return st
        raise AssertionError(f"condition not reached in {limit} bars")

    def v20(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """A v20 call on the fake as another client would make it (a trader's platform)."""
        return _http(method, f"http://127.0.0.1:{self.port}/v3/accounts/{self.broker.account_id}{path}",
                     body, self.broker.token)

    def fault(self, **f) -> None:
        self.admin("faults", {"faults": [f]})

    def open_broker_trades(self) -> list:
        return [t for t in list(self.broker.trades.values()) if t.state == "OPEN"]

    # -- the store ------------------------------------------------------------------------------
    def query(self, sql: str, *args) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.db)) as c:
            return c.execute(sql, args).fetchall()

    def transitions(self) -> list[tuple[str, str, str]]:
        return self.query("select old, new, trigger from state_transitions order by id")

    def reconcile_cli(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(deskd_cmd() + ["reconcile", "--config", str(self.cfg), "--scenario", "M",
                                             "--store", str(self.db), *extra],
                              env=self.env, capture_output=True, text=True, timeout=60)
