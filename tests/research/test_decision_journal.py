"""The decision journal in its three formats: decisions.parquet holds decisions.csv's rows
(same columns, same values), a part file written in a worker joins into the same bytes as
writing in place, and report.html counts the same signals from either file or says there is
none."""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deskd.core.events import Decision, DecisionAction
from deskd.research import report_html as rh
from deskd.research.outputs import (
    DECISION_COLUMNS,
    DECISION_FILES,
    ArrowDecisionWriter,
    DecisionCounter,
    DecisionJournal,
    DecisionWriter,
    decision_batch,
    decision_csv_rows,
    decision_schema,
    round2,
    write_decision_header,
)

TF = 900
T0 = 1_768_518_000  # 2026-01-15T23:00:00Z


def decisions(n: int, seed: int = 1) -> list[Decision]:
    """``n`` decisions over several days, with every shape a row can take: both sides and
    actions, a target or none, an order id or none, pips on and between the cents."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        traded = rng.random() < 0.2
        tp = rng.choice([None, rng.uniform(0, 80), 1.005, 1.115, 2.675, 17.3])
        out.append(Decision(T0 + 60 * TF * i // 7, rng.choice(["EURUSD", "USDJPY"]),
                            rng.choice(["S1_TREND_EMA_ATR_ADX", "donchian_20"]), rng.choice([1, -1]),
                            DecisionAction.TRADED if traded else DecisionAction.SKIPPED,
                            "traded" if traded else rng.choice(["position_open", "conflict:S2", "state:HALTED"]),
                            rng.choice([rng.uniform(0, 60), 10.0, 0.285]), tp, "VOL=HIGH|SPIKE=0",
                            f"d-A-EURUSD-{i}-ENTRY" if traded else None,
                            *rng.choice([(round(rng.uniform(1.0, 160.0), 5), rng.uniform(0, 40), "adx", rng.uniform(0, 60)),
                                         (1.10505, 2.675, "z", -2.345), (math.nan, math.nan, "", math.nan)])))
    return out


def csv_text(ds: list[Decision], scenario: str = "A") -> str:
    fh = io.StringIO()
    write_decision_header(fh)
    w = DecisionWriter(fh, scenario, TF)
    for d in ds:
        w(d)
    w.flush()
    return fh.getvalue()


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=50))
def test_round2_is_pythons_round(xs):
    got = round2(xs).tolist()
    for x, g in zip(xs, got):
        want = round(x, 2)
        assert (math.isnan(g) and math.isnan(want)) or (g == want and math.copysign(1, g) == math.copysign(1, want)), x


def test_round2_on_the_halves_float_products_misplace():
    xs = [1.005, 1.115, 2.675, 0.285, 1.255, -1.115, 5e15 + 0.5, 0.125, 0.375, -0.001, 123.455]
    xs += [k / 1000 + 0.005 for k in range(-5000, 5000)]
    assert round2(xs).tolist() == [round(x, 2) for x in xs]


def test_a_parquet_batch_holds_the_csv_rows_and_the_schema():
    ds = decisions(3_000)
    table = pa.Table.from_batches([decision_batch(ds, "B", TF)])
    assert table.schema == decision_schema() and table.column_names == DECISION_COLUMNS
    assert table.schema.field("decision_time").type == pa.timestamp("ms", tz="UTC")
    rows = list(csv.reader(io.StringIO(csv_text(ds, "B"))))
    assert rows[0] == DECISION_COLUMNS and rows[1:] == decision_csv_rows(table)
    assert table.column("tp_pips").null_count == sum(d.tp_pips is None for d in ds) > 0
    assert set(table.column("client_order_id").to_pylist()) >= {""}
    # the context: unknown is null (empty in the CSV); reason codes as trades.csv writes them
    assert table.column("decision_price").null_count == table.column("atr_pips").null_count == \
        sum(d.decision_price != d.decision_price for d in ds) > 0
    assert set(table.column("reason_codes").to_pylist()) >= {"", "z=-2.35"}
    assert [r for r in rows[1:] if r[-1] == "z=-2.35"][0][-3:] == ["1.10505", "2.67", "z=-2.35"]


def test_writing_in_place_and_joining_worker_parts_give_the_same_bytes(tmp_path):
    """One scenario written in place, the next in a part file: the same file as both in place,
    for CSV and Parquet; a row group per flush, each scenario's own."""
    runs = {"A": decisions(250_000, 1), "B": decisions(1_000, 2)}
    for fmt in ("csv", "parquet"):
        direct, joined = tmp_path / f"direct-{fmt}", tmp_path / f"joined-{fmt}"
        direct.mkdir()
        joined.mkdir()
        j = DecisionJournal(direct, fmt)
        for scn, ds in runs.items():
            w = j.writer(scn, TF)
            for d in ds:
                w(d)
            w.flush()
        j.close()
        j = DecisionJournal(joined, fmt)
        for k, (scn, ds) in enumerate(runs.items()):
            part = joined / f".part-{k}"
            with DecisionJournal.part_writer(part, fmt, scn, TF) as w:
                for d in ds:
                    w(d)
                w.flush()
            j.append_part(part)
            assert not part.exists()
        j.close()
        name = DECISION_FILES[fmt]
        assert sorted(p.name for p in joined.iterdir()) == [name]
        assert (direct / name).read_bytes() == (joined / name).read_bytes(), fmt
    meta = pq.ParquetFile(tmp_path / "joined-parquet" / "decisions.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100_000, 100_000, 50_000, 1_000]
    rows = list(csv.reader(io.StringIO((tmp_path / "joined-csv" / "decisions.csv").read_text())))
    assert rows[1:] == decision_csv_rows(pq.read_table(tmp_path / "joined-parquet" / "decisions.parquet"))


def test_none_writes_nothing_and_still_counts(tmp_path):
    j = DecisionJournal(tmp_path, "none")
    w = j.writer("A", TF)
    assert type(w) is DecisionCounter
    ds = decisions(500)
    for d in ds:
        w(d)
    w.flush()
    j.close()
    assert list(tmp_path.iterdir()) == [] and j.path is None
    assert sum(w.counts.values()) == 500 and w.counts["traded"] == sum(d.reason == "traded" for d in ds)
    with pytest.raises(ValueError, match="expected one of parquet, csv, none"):
        DecisionJournal(tmp_path, "xml")


def test_an_arrow_writer_counts_as_the_csv_writer_does():
    ds = decisions(2_000)
    sink = type("Sink", (), {"write_batch": lambda self, b: None})()
    a, c = ArrowDecisionWriter(sink, "A", TF), DecisionWriter(io.StringIO(), "A", TF)
    for d in ds:
        a(d)
        c(d)
    a.flush()
    c.flush()
    assert a.counts == c.counts


def _run_folder(tmp_path: Path, fmt: str, ds: list[Decision]) -> Path:
    folder = tmp_path / fmt
    folder.mkdir()
    j = DecisionJournal(folder, fmt)
    for scn in ("A", "B"):
        w = j.writer(scn, TF)
        for d in ds:
            w(d)
        w.flush()
    j.close()
    return folder


def test_report_html_counts_the_same_signals_from_parquet_as_from_csv(tmp_path):
    ds = decisions(20_000)
    from_csv = rh.count_decisions(_run_folder(tmp_path, "csv", ds) / "decisions.csv")
    from_parquet = rh.count_decisions(_run_folder(tmp_path, "parquet", ds) / "decisions.parquet")
    assert from_csv.keys() == from_parquet.keys() == {"A", "B"}
    for scn in from_csv:
        assert from_csv[scn].equals(from_parquet[scn])
    assert int(from_csv["A"]["n"].sum()) == len(ds)
    assert rh.decisions_file(tmp_path / "csv").name == "decisions.csv"
    assert rh.decisions_file(tmp_path / "parquet").name == "decisions.parquet"
    assert rh.decisions_file(tmp_path) is None
