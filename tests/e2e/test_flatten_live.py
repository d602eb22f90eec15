"""POST /flatten through the real `deskd run --broker http` and the fake v20 broker: the answer
says what became of each position (closed at the broker's price, failed, or unknown) and is 200
only when every one closed."""

import pytest

from tests.e2e.live_harness import Live, write_live_config

pytestmark = pytest.mark.e2e
BARS = 700
WARM = 300  # bars the fake has released before the daemon starts: its warm-up


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return write_live_config(tmp_path_factory.mktemp("live"), BARS)


def closed_at_the_broker(live, symbol: str):
    """The desk's broker trade on ``symbol`` closed last."""
    closed = [t for t in list(live.broker.trades.values()) if t.client_id and t.symbol == symbol
              and t.state == "CLOSED"]
    return max(closed, key=lambda t: int(t.id))


def test_flatten_whose_closes_all_fill_answers_200_with_their_prices(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        st = live.advance_until(lambda st: st["open_positions"])
        symbols = sorted(p["symbol"] for p in st["open_positions"])
        live.fault(kind="5xx", path="/close", method="PUT", count=1)  # one try fails, the next fills
        code, body = live.action("/flatten", {"reason": "end of day"})
        assert code == 200, body
        assert sorted(body["closing"]) == symbols and "error" not in body
        for sym in symbols:
            t = closed_at_the_broker(live, sym)
            assert body["outcomes"][sym] == {"outcome": "closed", "price": t.close_price, "exit_reason": "FLATTEN"}
        assert live.status()["open_positions"] == []
        live.stop()


def test_flatten_whose_close_gets_5xx_every_try_answers_502_unknown_then_the_desk_closes_it(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        st = live.advance_until(lambda st: len(st["open_positions"]) >= 2)
        symbols = sorted(p["symbol"] for p in st["open_positions"])
        live.fault(kind="5xx", path="/close", method="PUT", count=4)  # every try of the first close
        code, body = live.action("/flatten", {"reason": "drill"})
        assert code == 502, body
        assert sorted(body["closing"]) == symbols and sorted(body["outcomes"]) == symbols
        (stuck,) = [s for s, o in body["outcomes"].items() if o["outcome"] != "closed"]
        o = body["outcomes"][stuck]
        assert o["outcome"] == "unknown" and o["next"] == "looked up every tick" and "outcome unknown" in o["error"]
        assert stuck in body["error"] and "unknown" in body["error"]
        for sym in set(symbols) - {stuck}:
            assert body["outcomes"][sym]["price"] == closed_at_the_broker(live, sym).close_price
        assert [p["symbol"] for p in live.status()["open_positions"]] == [stuck]
        # looked up at the next tick (still open at the broker), sent again at the next close
        live.advance_until(lambda st: live.query(
            "select 1 from trades where symbol = ? and exit_reason = 'FLATTEN'", stuck), limit=3)
        ((price,),) = live.query("select exit_price from trades where symbol = ? and exit_reason = 'FLATTEN'",
                                 stuck)
        assert price == closed_at_the_broker(live, stuck).close_price
        live.stop()


def test_flatten_of_a_position_closed_by_hand_at_the_broker_answers_502_failed(cfg, tmp_path):
    with Live(cfg, tmp_path, release=WARM) as live:
        live.start()
        live.advance_until(lambda st: st["open_positions"])
        t = live.open_broker_trades()[0]
        live.admin("close", {"tradeID": t.id})
        assert live.advance(1)["state"] == "SAFE_MODE"
        code, body = live.action("/flatten", {"reason": "drill"})
        assert code == 502, body
        assert body["outcomes"][t.symbol] == {"outcome": "failed", "next": "retried at every bar close",
                                              "error": "no open desk trade at the broker to close"}
        assert f"{t.symbol} failed" in body["error"] and body["state"] == "SAFE_MODE"
        live.stop()
