"""The v20 broker's bookkeeping of broker reports, from plain dicts and no I/O (V20Book): which
closes are booked, when, at what price, and which are left for the operator; and the sender's
reading of transaction pages (V20Sender) from canned pages."""

import pytest

from deskd.adapters.v20.book import V20Book
from deskd.adapters.v20.naming import rfc3339
from deskd.adapters.v20.sender import V20Sender
from deskd.core.bus import Bus
from deskd.core.events import BarClosed, Fill, Intent, OrderIntent
from deskd.core.money import Instrument

T = 1_768_000_000 - 1_768_000_000 % 900


class Client:
    """The two calls the tested paths make, from canned transactions."""

    def __init__(self, txs):
        self.txs = txs

    async def transactions_since(self, tx_id):
        got = [t for t in self.txs if int(t["id"]) > tx_id]
        return got, int(self.txs[-1]["id"]) if self.txs else tx_id


def book_with_long():
    bus = Bus()
    fills = []
    bus.subscribe(Fill, fills.append)
    b = V20Book(bus, {"EURUSD": Instrument.parse("EURUSD")}, 900)
    order = OrderIntent("d-A-EURUSD-1-ENTRY", T, "EURUSD", "S1", 1, 10_000, Intent.ENTRY, 20.0, 30.0, 20.0)
    b.last_bar["EURUSD"] = BarClosed("EURUSD", 900, T, 1.1, 1.1, 1.1, 1.1000, 0)
    b.entry_filled(order, {"price": 1.10012, "time": T + 900, "trade_id": "7"})
    return b, fills


def sender(book, txs, last_tx_id="4"):
    s = V20Sender(book, Client(list(txs)))
    s.last_tx_id = last_tx_id
    return s


def close_tx(tx_id, reason, price, ts, trade_id="7"):
    return {"id": str(tx_id), "type": "ORDER_FILL", "reason": reason, "time": rfc3339(ts), "price": f"{price:.5f}",
            "tradesClosed": [{"tradeID": trade_id, "units": "-10000", "price": f"{price:.5f}"}]}


def test_entry_fill_sets_the_bracket_from_the_fill_and_pays_against_the_decision_close():
    b, fills = book_with_long()
    (f,) = fills
    assert (f.price, f.ref_price, f.sl_price, f.tp_price) == (1.10012, 1.1, 1.09812, 1.10312)
    assert f.cost_pips == (1.10012 - 1.1) / 0.0001


def test_stop_fill_waits_for_its_bar_then_books_at_the_broker_price_against_the_level():
    b, fills = book_with_long()
    assert b.on_transaction(close_tx(5, "STOP_LOSS_ORDER", 1.09805, T + 1800)) == []
    assert len(fills) == 1 and b.open_exit_due() == {"EURUSD"}  # the bar of the fill is not in yet
    b.on_bar(BarClosed("EURUSD", 900, T + 900, 1.1, 1.1, 1.1, 1.1, 0))
    assert len(fills) == 1
    b.on_bar(BarClosed("EURUSD", 900, T + 1800, 1.1, 1.1, 1.09, 1.095, 0))
    exit_fill = fills[1]
    assert (exit_fill.exit_reason, exit_fill.price, exit_fill.ref_price, exit_fill.bar_ts) == \
        ("SL", 1.09805, 1.09812, T + 1800)
    assert round(exit_fill.cost_pips, 6) == 0.7 and b.positions == {} and b.trade_ids == {}


def test_a_close_by_hand_is_not_booked_and_is_reported():
    b, fills = book_with_long()
    (found,) = b.on_transaction(close_tx(5, "MARKET_ORDER_TRADE_CLOSE", 1.1003, T + 900))
    assert "EURUSD" in found and "not booked" in found
    assert len(fills) == 1 and "EURUSD" in b.unexplained and "EURUSD" in b.positions
    b.book_unexplained("EURUSD")
    assert (fills[1].exit_reason, fills[1].price) == ("BROKER_CLOSE", 1.1003)


def test_the_desks_own_close_is_booked_under_its_exit_id_at_the_broker_price():
    b, fills = book_with_long()
    exit_order = OrderIntent("d-A-EURUSD-2-EXIT", T + 900, "EURUSD", "S1", -1, 10_000, Intent.EXIT)
    assert b.exit_sent(exit_order)
    assert b.on_transaction(close_tx(5, "MARKET_ORDER_TRADE_CLOSE", 1.1003, T + 900)) == []
    assert (fills[1].client_order_id, fills[1].price, fills[1].exit_reason) == ("d-A-EURUSD-2-EXIT", 1.1003, "MARKET")
    assert b.positions == {} and b.unexplained == {}


def test_an_entry_whose_answer_was_lost_is_booked_when_its_fill_shows_up():
    b, fills = book_with_long()
    b.on_transaction(close_tx(5, "STOP_LOSS_ORDER", 1.098, T + 900))
    lost = OrderIntent("d-A-EURUSD-3-ENTRY", T + 900, "EURUSD", "S1", -1, 10_000, Intent.ENTRY, 20.0, 30.0, 20.0)
    b.unknown_outcome(lost, "timeout")
    opened_tx = {"id": "6", "type": "ORDER_FILL", "reason": "MARKET_ORDER", "time": rfc3339(T + 960),
                 "price": "1.09900", "tradeOpened": {"tradeID": "8", "clientExtensions": {"id": lost.client_order_id}}}
    assert b.on_transaction(opened_tx) == []
    assert b.on_transaction(opened_tx) == []  # read twice (a poll, then a lookup): booked once
    assert b.unknown == {} and b.trade_ids == {"EURUSD": "8"}
    assert [(f.client_order_id, f.price) for f in fills if f.intent is Intent.ENTRY][-1] == (lost.client_order_id, 1.099)
    assert sum(f.client_order_id == lost.client_order_id for f in fills) == 1


def test_other_desks_and_repeated_transactions_are_ignored():
    tx = close_tx(5, "STOP_LOSS_ORDER", 1.098, T + 900)
    b, fills = book_with_long()
    assert b.on_transaction(tx) == []
    assert b.on_transaction(close_tx(6, "STOP_LOSS_ORDER", 1.2, T + 900, trade_id="99")) == []
    assert b.on_transaction(tx) == []
    assert [len(v) for v in b.exits_due.values()] == [1]


def test_a_margin_closeout_is_booked_as_such_at_the_broker_price():
    b, fills = book_with_long()
    assert b.on_transaction(close_tx(5, "MARKET_ORDER_MARGIN_CLOSEOUT", 1.0950, T + 900)) == []
    b.on_bar(BarClosed("EURUSD", 900, T + 900, 1.1, 1.1, 1.09, 1.095, 0))
    assert (fills[1].exit_reason, fills[1].price, fills[1].cost_pips) == ("MARGIN_CLOSEOUT", 1.095, 0.0)


@pytest.mark.asyncio
async def test_transactions_after_a_snapshot_are_left_for_the_next_poll():
    b, fills = book_with_long()
    s = sender(b, [close_tx(5, "TAKE_PROFIT_ORDER", 1.10312, T + 900), {"id": "6", "type": "DAILY_FINANCING"}])
    await s.poll_transactions(until_id=4)
    assert s.last_tx_id == "4" and b.open_exit_due() == set()
    await s.poll_transactions()
    assert s.last_tx_id == "6" and b.open_exit_due() == {"EURUSD"}


@pytest.mark.asyncio
async def test_a_short_page_of_transactions_is_continued_not_skipped():
    class Paged(Client):
        async def transactions_since(self, tx_id):  # one per page, the account is at 7
            got = [t for t in self.txs if int(t["id"]) > tx_id][:1]
            return got, 7

    b, fills = book_with_long()
    s = V20Sender(b, Paged([{"id": "5", "type": "DAILY_FINANCING"}, close_tx(6, "TAKE_PROFIT_ORDER", 1.10312, T + 900)]))
    s.last_tx_id = "4"
    await s.poll_transactions()
    assert s.last_tx_id == "5" and b.open_exit_due() == set()
    await s.poll_transactions()
    assert s.last_tx_id == "6" and b.open_exit_due() == {"EURUSD"}


def test_a_broker_fill_splits_its_cost_only_when_the_broker_reports_bid_and_ask():
    from deskd.adapters.v20.book import cost_split
    from deskd.adapters.v20.naming import quote_of

    fill = {"price": "1.10012", "fullPrice": {"bids": [{"price": "1.10000"}], "asks": [{"price": "1.10010"}]}}
    assert quote_of(fill) == (1.1, 1.1001)
    spread, slippage = cost_split(1.7, *quote_of(fill), 0.0001)  # long: 1.7 pips over the decision price
    assert spread == pytest.approx(0.5) and slippage == pytest.approx(1.2) and spread + slippage == pytest.approx(1.7)
    assert quote_of({"fullPrice": {"closeoutBid": "150.010", "closeoutAsk": "150.030"}}) == (150.01, 150.03)
    for bad in ({}, {"fullPrice": "x"}, {"fullPrice": {"bids": [{"price": "abc"}], "asks": []}},
                {"fullPrice": {"bids": [{"price": "1.2"}], "asks": [{"price": "1.1"}]}}):  # crossed: not a quote
        assert quote_of(bad) == (None, None)
    assert cost_split(1.7, None, None, 0.0001) == (None, None)  # not reported: unknown, never assumed
