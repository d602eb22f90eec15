"""The real `deskd run` stopped while idle at the end of its bar files and restarted on the same
files: start-up is restore, then serve. /status shows the store's desk, and an operator action
commits that desk, never a bare one over the store. A store holding a position the config no
longer trades is refused with one line and exit 2."""

import gzip
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from tests.conftest import EXAMPLE, deskd_cmd
from tests.e2e.live_harness import free_port

pytestmark = pytest.mark.e2e
SAMPLE = EXAMPLE.parent / "../../data/sample"
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
BARS = 1500  # per symbol; at the end of these the desk holds a position on each symbol
TOKEN = "restart-idle-token-0123456789"


def write_config(d, symbols=SYMBOLS):
    """The example desk on the first BARS bars of the sample, trading ``symbols``."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    for sym in SYMBOLS:
        path = d / f"{sym}.csv"
        if not path.exists():
            with gzip.open(SAMPLE / f"{sym}_M15.csv.gz", "rt") as fh:
                path.write_text("".join(fh.readlines()[: BARS + 1]))
    cfg["universe"]["symbols"] = list(symbols)
    cfg["data"]["files"] = {s: str(d / f"{s}.csv") for s in symbols}
    cfg["costs"]["spread_pips"] = {s: v for s, v in cfg["costs"]["spread_pips"].items() if s in symbols}
    path = d / f"desk-{len(symbols)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def http(method, port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Daemon:
    """`deskd run` at full speed over the bar files, API on, no --exit-at-end: it idles at the
    end of the files until SIGTERM. A context manager: killed if still running at exit."""

    def __init__(self, cfg, db, log):
        self.port = free_port()
        self.log = log
        with open(log, "a") as err:
            self.p = subprocess.Popen(deskd_cmd() + ["run", "--config", str(cfg), "--store", str(db), "--speed", "0",
                                                     "--api-port", str(self.port), "--log-level", "WARNING"],
                                      env={**os.environ, "DESKD_API_TOKEN": TOKEN},
                                      stdout=subprocess.DEVNULL, stderr=err, text=True)

    def idle_status(self) -> dict:
        """/status once every bar of the files went through (warm-up or live). Every answer
        before that is checked too: the API must never show a desk the store has not restored."""
        answers = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.p.poll() is None, f"deskd run exited {self.p.returncode}:\n{self.log.read_text()}"
            try:
                status, st = http("GET", self.port, "/status")
            except OSError:  # not serving yet: still recovering
                time.sleep(0.1)
                continue
            assert status == 200, st
            answers.append(st)
            if st["feed"]["live_bars"] + st["feed"]["warm_up_bars"] == len(SYMBOLS) * BARS:
                return {**st, "answers": answers}
            time.sleep(0.1)
        raise AssertionError(f"deskd run did not reach the end of its files:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        assert self.p.wait(30) == 0, self.log.read_text()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def desk_view(st: dict) -> tuple:
    return (st["equity_usd"], st["balance_usd"],
            [(p["symbol"], p["side"], float(p["units"]), p["entry_price"], p["sl_price"], p["tp_price"])
             for p in st["open_positions"]])


def store_rows(db) -> tuple:
    with sqlite3.connect(db) as c:
        return (c.execute("select * from trades order by trade_id").fetchall(),
                c.execute("select symbol, side, units, entry_price from positions order by symbol").fetchall(),
                c.execute("select round(balance_usd, 6), next_trade_id from desk_state").fetchall())


@pytest.fixture(scope="module")
def idle_store(tmp_path_factory):
    """A store of a run stopped (SIGTERM) while idle at the end of its files, with open
    positions; its last /status."""
    d = tmp_path_factory.mktemp("idle")
    db = d / "desk.db"
    with Daemon(write_config(d), db, d / "run1.log") as daemon:
        st = daemon.idle_status()
        daemon.stop()
    assert st["feed"]["warm_up_bars"] == 0 and len(st["open_positions"]) == len(SYMBOLS)
    return d, db, st


def copy_store(idle_store, tmp_path):
    d, db, st = idle_store
    for f in d.glob("desk.db*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "desk.db", st


def test_restart_idle_shows_the_store_and_an_operator_halt_keeps_it(idle_store, tmp_path):
    db, before = copy_store(idle_store, tmp_path)
    cfg = write_config(tmp_path)
    rows = store_rows(db)
    assert rows[0] and len(rows[1]) == len(SYMBOLS)

    with Daemon(cfg, db, tmp_path / "run2.log") as daemon:
        st = daemon.idle_status()
        assert (st["feed"]["live_bars"], st["feed"]["warm_up_bars"]) == (0, len(SYMBOLS) * BARS)
        assert [desk_view(a) for a in st["answers"]] == [desk_view(before)] * len(st["answers"])
        assert st["state"] == before["state"]
        assert http("POST", daemon.port, "/halt", {"reason": "restart test"}) == (200, {"state": "HALTED"})
        daemon.stop()
    assert store_rows(db) == rows  # the halt committed the restored desk: nothing reset or deleted

    with Daemon(cfg, db, tmp_path / "run3.log") as daemon:
        st = daemon.idle_status()
        daemon.stop()
    assert desk_view(st) == desk_view(before) and st["state"] == "HALTED"
    assert store_rows(db) == rows


def test_a_store_holding_a_symbol_the_config_no_longer_trades_exits_2_with_one_line(idle_store, tmp_path):
    db, _ = copy_store(idle_store, tmp_path)
    cfg = write_config(tmp_path, symbols=("EURUSD", "GBPUSD"))
    rows = store_rows(db)
    p = subprocess.run(deskd_cmd() + ["run", "--config", str(cfg), "--store", str(db), "--speed", "0",
                                      "--no-api", "--exit-at-end", "--log-level", "WARNING"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith("deskd: error: ") and "USDJPY" in line and str(db) in line
    assert store_rows(db) == rows
