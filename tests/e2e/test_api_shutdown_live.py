"""SIGTERM to the real `deskd run --broker http` while a POST /poll waits for the tick in
flight: the tick finishes, the waiting poll is answered 503 {"error": "shutting down"}, and
nothing is logged as a failure (it used to run a tick on the closed broker client: a
"RuntimeError: Session is closed" traceback and a 500)."""

import signal
import threading
import time

import pytest

from tests.e2e.live_harness import Live, write_live_config

pytestmark = pytest.mark.e2e
WARM = 300


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return write_live_config(tmp_path_factory.mktemp("live"), 400)


def test_a_poll_waiting_when_sigterm_arrives_gets_503_and_no_traceback(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start("--reconcile-every", "3600")  # the tick in flight ends without a reconciliation
        live.admin("advance", {"bars": 1})
        # the next tick's first candle read is held at the broker past the client's timeout
        live.fault(kind="latency", path="/candles", delay_s=1.0, count=1)
        first: list = []
        in_flight = threading.Thread(target=lambda: first.append(live.action("/poll", {"reason": "in flight"})))
        in_flight.start()
        deadline = time.monotonic() + 10
        while live.broker.faults[-1]["count"] > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        live.proc.send_signal(signal.SIGTERM)  # the daemon waits for the tick in flight...
        time.sleep(0.2)
        code, body = live.action("/poll", {"reason": "pending"})  # ...and this one waits behind it
        in_flight.join(30)
        assert first == [(200, {"bars": 3, "state": "RUNNING"})]
        assert (code, body) == (503, {"error": "shutting down"})
        assert live.proc.wait(30) == 0
        log = live.daemon_log()
        assert "Traceback" not in log and "Error handling request" not in log
        assert [line for line in log.splitlines() if '"level": "error"' in line] == []
        live.proc = None
