"""The real `deskd flatten` against the real `deskd run`: one line per symbol saying what became
of its position (closed at the broker's price, FAILED or UNKNOWN and what the desk does next;
paper: closing at its next open), exit 0 only when every position closed, 1 otherwise; --json
prints the daemon's answer as it is."""

import contextlib
import json
import re
import subprocess
import time

import pytest

from deskd.daemon.api_client import DaemonUnreachable, api_request
from tests.conftest import deskd_cmd, run
from tests.e2e.live_harness import API_TOKEN, Live, free_port, write_live_config

pytestmark = pytest.mark.e2e
BARS = 700
WARM = 300  # bars the fake has released before the daemon starts: its warm-up
PAPER_BARS = 300  # the paper replay ends holding positions on these


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return write_live_config(tmp_path_factory.mktemp("live"), BARS)


@pytest.fixture(scope="module")
def paper_cfg(tmp_path_factory):
    return write_live_config(tmp_path_factory.mktemp("paper"), PAPER_BARS)


def flatten(api_port: int, token_file, *extra: str) -> subprocess.CompletedProcess:
    return run("flatten", "--reason", "drill", "--api", f"http://127.0.0.1:{api_port}",
               "--token-file", str(token_file), *extra, check=False)


def closed_price(live: Live, symbol: str) -> float:
    """The close price of the desk's broker trade on ``symbol`` closed last."""
    closed = [t for t in list(live.broker.trades.values()) if t.client_id and t.symbol == symbol
              and t.state == "CLOSED"]
    return max(closed, key=lambda t: int(t.id)).close_price


def test_flatten_whose_closes_all_fill_prints_their_prices_and_exits_0(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        st = live.advance_until(lambda st: st["open_positions"])
        symbols = [p["symbol"] for p in st["open_positions"]]
        live.fault(kind="5xx", path="/close", method="PUT", count=1)  # one try fails, the retry fills
        p = flatten(live.api_port, tmp_path / "api.token")
        assert p.returncode == 0, p.stdout + p.stderr
        assert sorted(p.stdout.splitlines()) == sorted(
            f"{s}  closed   at {closed_price(live, s)} (FLATTEN)" for s in symbols)
        assert p.stderr == ""
        p = flatten(live.api_port, tmp_path / "api.token")  # nothing left
        assert (p.returncode, p.stdout) == (0, "nothing to close: the desk holds no position\n")
        live.stop()


def test_flatten_with_a_failed_close_prints_each_symbol_and_exits_1(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        st = live.advance_until(lambda st: len(st["open_positions"]) >= 2)
        symbols = {p["symbol"] for p in st["open_positions"]}
        t = live.open_broker_trades()[0]
        live.admin("close", {"tradeID": t.id})  # by hand at the broker: the desk's close has nothing to close
        assert live.advance(1)["state"] == "SAFE_MODE"
        p = flatten(live.api_port, tmp_path / "api.token")
        assert p.returncode == 1, p.stdout + p.stderr
        failed = f"{t.symbol}  FAILED   no open desk trade at the broker to close -- retried at every bar close"
        assert sorted(p.stdout.splitlines()) == sorted(
            [failed] + [f"{s}  closed   at {closed_price(live, s)} (FLATTEN)" for s in symbols - {t.symbol}])
        assert p.stderr == (f"deskd: flatten: 1 of {len(symbols)} position(s) not closed: {t.symbol} "
                            f"(desk SAFE_MODE)\n")
        live.stop()


def test_flatten_whose_close_gets_5xx_every_try_prints_unknown_and_exits_1(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        st = live.advance_until(lambda st: len(st["open_positions"]) >= 2)
        symbols = {p["symbol"] for p in st["open_positions"]}
        live.fault(kind="5xx", path="/close", method="PUT", count=4)  # every try of the first close
        p = flatten(live.api_port, tmp_path / "api.token")
        assert p.returncode == 1, p.stdout + p.stderr
        (stuck,) = [line for line in p.stdout.splitlines() if "closed" not in line.split()[1]]
        assert re.fullmatch(r"[A-Z]{6}  UNKNOWN  .*outcome unknown.* -- looked up every tick", stuck), stuck
        sym = stuck.split()[0]
        assert sorted(p.stdout.splitlines()) == sorted(
            [stuck] + [f"{s}  closed   at {closed_price(live, s)} (FLATTEN)" for s in symbols - {sym}])
        assert p.stderr.startswith(f"deskd: flatten: 1 of {len(symbols)} position(s) not closed: {sym} (desk ")
        # again with --json: the daemon's answer as it is (the close still unconfirmed), the same exit code
        p = flatten(live.api_port, tmp_path / "api.token", "--json")
        assert p.returncode == 1, p.stdout + p.stderr
        body = json.loads(p.stdout)
        assert body["closing"] == [sym] and sym in body["error"] and p.stderr == ""
        assert body["outcomes"] == {sym: {"outcome": "unknown", "next": "looked up every tick",
                                          "error": "the broker has not confirmed the close"}}
        live.stop()


def test_flatten_of_the_paper_daemon_prints_each_symbol_closing_at_its_next_open(paper_cfg, tmp_path):
    (tmp_path / "api.token").write_text(API_TOKEN)
    port = free_port()
    with open(tmp_path / "daemon.log", "w") as log:
        proc = subprocess.Popen(deskd_cmd() + [
            "run", "--config", str(paper_cfg), "--scenario", "M", "--speed", "0", "--store", str(tmp_path / "p.db"),
            "--api-port", str(port), "--token-file", str(tmp_path / "api.token"), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        st: dict = {}
        while st.get("feed", {}).get("live_bars") != 3 * PAPER_BARS:  # the whole replay, then it waits
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            with contextlib.suppress(DaemonUnreachable):  # not up yet
                st = api_request(f"http://127.0.0.1:{port}", "GET", "/status")[1]
            time.sleep(0.1)
        symbols = [p["symbol"] for p in st["open_positions"]]
        assert symbols, "no position open at the end of the data: the test needs one"
        p = flatten(port, tmp_path / "api.token")
        assert p.returncode == 0, p.stdout + p.stderr
        assert sorted(p.stdout.splitlines()) == sorted(f"{s}  closing  at its next open" for s in symbols)
        assert p.stderr == ""
        status = api_request(f"http://127.0.0.1:{port}", "GET", "/status")[1]
        assert status["state"] == "HALTED"  # flat stays flat until `deskd resume`
        resumed = run("resume", "--api", f"http://127.0.0.1:{port}", "--token-file", str(tmp_path / "api.token"),
                      "--reason", "back")
        assert resumed.returncode == 0
        p = flatten(port, tmp_path / "api.token", "--keep-trading")
        assert p.returncode == 0 and api_request(f"http://127.0.0.1:{port}", "GET", "/status")[1]["state"] == "RUNNING"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
