"""trades.csv is read from one spec checked against the Trade record: a field added to Trade
and not placed in the CSV (or left out on purpose) fails at import, not in an audit."""

import csv
import io
from dataclasses import asdict

import pytest

from deskd.core.events import Decision, DecisionAction, Trade
from deskd.research.outputs import (
    DECISION_COLUMNS,
    TRADE_COLUMNS,
    TRADE_CSV,
    TRADE_FIELDS_NOT_WRITTEN,
    CsvJournal,
    DecisionWriter,
    check_trade_csv,
    decision_record,
    trade_record,
    trade_row,
    write_decision_header,
)


def test_a_trade_field_neither_written_nor_left_out_is_refused():
    check_trade_csv(TRADE_CSV, TRADE_FIELDS_NOT_WRITTEN)
    without_mae = [c for c in TRADE_CSV if c[1] != "mae_pips"]
    with pytest.raises(RuntimeError, match="mae_pips"):
        check_trade_csv(without_mae, TRADE_FIELDS_NOT_WRITTEN)
    with pytest.raises(RuntimeError, match="no_such_field"):
        check_trade_csv([*TRADE_CSV, ("x", "no_such_field", str)], TRADE_FIELDS_NOT_WRITTEN)


def test_a_trade_row_reads_back_under_its_column_names():
    t = Trade(7, "USDJPY", "S2", -1, 10_000.0, 1_700_000_900, 1_700_000_900, 150.1234567, 150.12, 150.5, None,
              25.0, 0.4, "RANGE", "rsi_lo", "d-A-USDJPY-7", exit_ts=1_700_004_500, exit_price=149.9,
              exit_reason="SL", pnl_usd=-12.345, r_multiple=-0.49382, hold_bars=4)
    fh = io.StringIO()
    j = CsvJournal(fh, TRADE_COLUMNS)
    j.write(trade_row(t, "B"))
    j.flush()
    (row,) = csv.DictReader(io.StringIO(fh.getvalue()))
    assert (row["trade_id"], row["scenario"], row["side"], row["units"]) == ("7", "B", "SHORT", "10000")
    assert (row["signal_time"], row["exit_time"]) == ("2023-11-14T22:28:20Z", "2023-11-14T23:28:20Z")
    assert (row["entry_price"], row["tp_price"], row["pnl_usd"], row["r_multiple"]) == ("150.123457", "", "-12.35", "-0.4938")
    assert (row["reason_codes"], row["exit_reason"], row["hold_bars"]) == ("rsi_lo", "SL", "4")


def test_the_api_records_are_the_csv_rows_one_format():
    t = Trade(7, "USDJPY", "S2", -1, 10_000.0, 1_700_000_900, 1_700_000_900, 150.1234567, 150.12, 150.5, None,
              25.0, 0.4, "RANGE", "rsi_lo", "d-A-USDJPY-7", exit_ts=1_700_004_500, exit_price=149.9,
              exit_reason="SL", pnl_usd=-12.345, r_multiple=-0.49382, hold_bars=4)
    fh = io.StringIO()
    j = CsvJournal(fh, TRADE_COLUMNS)
    j.write(trade_row(t, "B"))
    j.flush()
    (row,) = csv.DictReader(io.StringIO(fh.getvalue()))
    rec = trade_record(asdict(t))
    assert list(rec) == [c for c in TRADE_COLUMNS if c != "scenario"]
    assert {k: "" if v is None else str(v) for k, v in rec.items()} == {k: v for k, v in row.items() if k != "scenario"}

    def written_and_record(d: Decision) -> tuple[dict, dict]:
        """``d`` as decisions.csv's row (DecisionWriter) and as decision_record gives it."""
        fh = io.StringIO()
        write_decision_header(fh)
        w = DecisionWriter(fh, "A", 900)
        w(d)
        w.flush()
        (line,) = csv.DictReader(io.StringIO(fh.getvalue()))
        return line, decision_record(d._asdict(), 900)

    d = Decision(1_700_000_000, "EURUSD", "S1", 1, DecisionAction.SKIPPED, "position_open", 12.345, None, "TREND", None)
    line, rec = written_and_record(d)
    assert list(rec) == DECISION_COLUMNS[1:]
    assert {k: "" if v is None else str(v) for k, v in rec.items()} == {k: v for k, v in line.items() if k != "scenario"}

    # with its context (the decision bar's close, the strategy's ATR and score), as the store keeps it
    d = d._replace(decision_price=1.10234, atr_pips=7.891, score_name="adx", score=31.419)
    line, rec = written_and_record(d)
    assert (rec["decision_price"], rec["atr_pips"], rec["reason_codes"]) == (1.10234, 7.89, "adx=31.42")
    assert {k: "" if v is None else str(v) for k, v in rec.items()} == {k: v for k, v in line.items() if k != "scenario"}
