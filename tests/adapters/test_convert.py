"""deskd.adapters.convert on real bars: HistData/MT4/MT5 imports round-trip, HistData's own 2019
glitches are reported, resampling M1 reproduces the published M15, clocks are recognised,
writes are atomic, and each kind of bad input names its file and line.

The real files live beside the repository (shared/data, see its SOURCES.md files); tests that
need them skip with the reason when it is absent. The big M1 file is read once per module.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest

from deskd.adapters import convert as cv
from deskd.adapters.bars import read_bars
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "data"
M1 = DATA / "fx_m1" / "EURUSD_M1.csv.gz"
M15 = DATA / "fx_m1" / "EURUSD_M15.csv.gz"
BROKER = DATA / "fx"  # MT5 exports in broker (Europe/Athens) time
NY = "America/New_York"


def need(path):
    if not path.exists():
        pytest.skip(f"{path} absent: the real bar files live in shared/data beside the repository")
    return path


@pytest.fixture(scope="module")
def m1() -> pd.DataFrame:
    """EURUSD M1, 2017-2019, New York time (HistData, cleaned: shared/data/fx_m1/SOURCES.md)."""
    return pd.read_csv(need(M1))


@pytest.fixture(scope="module")
def broker_m15() -> pd.DataFrame:
    """EURUSD M15 from an MT5 terminal, broker time (Europe/Athens), first 1,500 bars (2+ weeks)."""
    return pd.read_csv(need(BROKER / "EURUSD_M15.csv"), nrows=1500)


def between(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """Rows with start <= time < end (ISO text compares in time order)."""
    return df[(df.time >= start) & (df.time < end)].reset_index(drop=True)


def histdata_rows(df: pd.DataFrame) -> list[str]:
    """The rows as HistData writes them: ``YYYYMMDD HHMMSS;o;h;l;c;0`` with six decimals."""
    t = df.time.str.replace("-", "").str.replace(":", "")
    return [f"{a};{o:.6f};{h:.6f};{lo:.6f};{c:.6f};0"
            for a, o, h, lo, c in zip(t, df.open, df.high, df.low, df.close)]


def write_lines(path, lines, encoding="utf-8"):
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def assert_file_holds(path, expected: pd.DataFrame, tz: str, tf: int):
    """``path`` loads in deskd (read_bars, ``tz``, ``tf``) and holds exactly ``expected``."""
    assert sum(len(c) for c in read_bars(path, tz, tf)) == len(expected)
    got = pd.read_csv(path)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)


def import_error(*args, **kw) -> str:
    with pytest.raises(cv.ConvertError) as e:
        cv.import_sources(*args, **kw)
    return str(e.value)


# --- HistData ---------------------------------------------------------------------------------


@pytest.mark.parametrize("start,split,end,names", [
    # two weeks across the end of US daylight saving (2017-11-05), as HistData's monthly files
    ("2017-10-29", "2017-11-01", "2017-11-11", ("201710", "201711")),
    # across a year end, as HistData's yearly files
    ("2017-12-20", "2018-01-01", "2018-01-06", ("2017", "2018")),
])
def test_histdata_files_import_back_to_the_same_bars(m1, tmp_path, start, split, end, names):
    want = between(m1, start, end)
    a = write_lines(tmp_path / f"DAT_ASCII_EURUSD_M1_{names[0]}.csv", histdata_rows(between(want, start, split)))
    b = write_lines(tmp_path / f"DAT_ASCII_EURUSD_M1_{names[1]}.csv", histdata_rows(between(want, split, end)))
    bars, report = cv.import_sources("histdata", [b, a])  # any order: joined in time order
    out = cv.write_bars(bars, tmp_path / "EURUSD_M1.csv.gz", timeframe_s=60)
    assert_file_holds(out, want, NY, 60)
    assert (report.symbol, report.tz, report.timeframe, report.bars) == ("EURUSD", NY, "M1", len(want))
    assert report.findings() == []
    assert report.clock["clock"] == "new_york"


def test_histdata_2019_glitches_are_reported_with_counts_and_examples(m1, tmp_path):
    """HistData's raw 2019 file, rebuilt from the cleaned bars by undoing SOURCES.md's fixes: the
    weeks when US and EU DST disagree an hour behind New York, and the hour 2019-10-27 19:00
    (raw time) repeated. The import reports them and corrects nothing."""
    spring, autumn = between(m1, "2019-03-03", "2019-04-06"), between(m1, "2019-10-20", "2019-11-09")
    raw = pd.concat([spring, autumn], ignore_index=True)
    t = pd.to_datetime(raw.time)
    behind = ((t >= "2019-03-10") & (t < "2019-03-30")) | ((t >= "2019-10-27") & (t < "2019-11-02"))
    raw["time"] = (t - pd.Timedelta(hours=1) * behind.astype(int)).dt.strftime("%Y-%m-%d %H:%M:%S")
    repeated = between(raw, "2019-10-27 19:00", "2019-10-27 20:00")
    assert len(repeated) == 60
    lines = histdata_rows(raw)
    at = raw.index[raw.time == "2019-10-27 20:00:00"][0]  # the repeated hour follows the original
    lines[at:at] = histdata_rows(repeated)
    src = write_lines(tmp_path / "DAT_ASCII_EURUSD_M1_2019.csv", lines)

    bars, report = cv.import_sources("histdata", [src])
    assert report.duplicates_identical["count"] == 60
    assert report.duplicates_identical["examples"][0].startswith(
        "2019-10-27 19:00:00 .. 2019-10-27 19:59:00 (60 row(s), first at ")
    assert [(w["week"], w["shift_h"]) for w in report.dst_shifted_weeks] == [
        ("2019-03-10", -1), ("2019-03-17", -1), ("2019-03-24", -1), ("2019-10-27", -1)]
    assert [(g["after"], g["before"]) for g in report.dst_hour_gaps] == [
        ("2019-03-31 18:59:00", "2019-03-31 20:00:00")]
    text = "\n".join(report.findings())
    assert "60 identical repeated row(s) dropped" in text and "4 week(s) open and close 1 hour before" in text
    assert [cv.wall_str(t) for t in bars.ts] == sorted(raw.time)  # copies dropped, nothing shifted


def test_overlapping_files_keep_one_copy_of_the_shared_rows(m1, tmp_path):
    want = between(m1, "2018-06-04", "2018-06-09")
    a = write_lines(tmp_path / "a_EURUSD.csv", histdata_rows(between(want, "2018-06-04", "2018-06-07")))
    b = write_lines(tmp_path / "b_EURUSD.csv", histdata_rows(between(want, "2018-06-06", "2018-06-09")))
    bars, report = cv.import_sources("histdata", [a, b])
    assert report.duplicates_identical["count"] == len(between(want, "2018-06-06", "2018-06-07"))
    out = cv.write_bars(bars, tmp_path / "out.csv", timeframe_s=60)
    assert_file_holds(out, want, NY, 60)


def test_a_time_repeated_with_other_prices_is_refused_unless_keep_first(m1, tmp_path):
    rows = histdata_rows(between(m1, "2018-06-04 10:00", "2018-06-04 10:10"))
    changed = rows[3].split(";")[0] + ";1.100000;1.200000;1.000000;1.150000;0"  # same time, other prices
    src = write_lines(tmp_path / "EURUSD.csv", rows + [changed])
    msg = import_error("histdata", [src])
    assert f"{src}: line 11: time 2018-06-04 10:03:00 repeats {src}: line 4 with different prices" in msg
    assert "--keep-first" in msg
    bars, report = cv.import_sources("histdata", [src], keep_first=True)
    assert len(bars) == 10 and bars.close[3] != 1.15
    assert report.duplicates_conflicting["count"] == 1
    assert "first kept" in report.findings()[0]


def test_rows_out_of_order_are_sorted_and_counted(m1, tmp_path):
    rows = histdata_rows(between(m1, "2018-06-04 10:00", "2018-06-04 10:10"))
    rows[4], rows[5] = rows[5], rows[4]
    src = write_lines(tmp_path / "EURUSD.csv", rows)
    bars, report = cv.import_sources("histdata", [src])
    assert report.out_of_order["count"] == 1 and f"{src}: line 6" in report.out_of_order["examples"][0]
    assert (np.diff(bars.ts) == 60).all()


def test_zip_and_gz_sources_and_blank_lines(m1, tmp_path):
    import zipfile

    want = between(m1, "2018-06-04 10:00", "2018-06-04 12:00")
    rows = histdata_rows(want)
    z = tmp_path / "HISTDATA_COM_ASCII_EURUSD_M1201806.zip"
    with zipfile.ZipFile(z, "w") as zf:  # as HistData ships it: the csv and a gap report
        zf.writestr("DAT_ASCII_EURUSD_M1_201806.csv", "\n".join(rows[:60]) + "\n")
        zf.writestr("DAT_ASCII_EURUSD_M1_201806.txt", "gap report")
    g = tmp_path / "EURUSD_part2.csv.gz"
    g.write_bytes(gzip.compress(("\n".join(rows[60:90]) + "\n\n" + "\n".join(rows[90:]) + "\n").encode()))
    bars, report = cv.import_sources("histdata", [z, g])
    assert report.blank_lines == 1 and len(bars) == len(want)
    assert_file_holds(cv.write_bars(bars, tmp_path / "o.csv", timeframe_s=60), want, NY, 60)


# --- MT4 / MT5 -----------------------------------------------------------------------------


def mt4_rows(df: pd.DataFrame) -> list[str]:
    t = pd.to_datetime(df.time)
    return [f"{a},{b},{o!r},{h!r},{lo!r},{c!r},{v}" for a, b, o, h, lo, c, v in
            zip(t.dt.strftime("%Y.%m.%d"), t.dt.strftime("%H:%M"), df.open, df.high, df.low, df.close, df.volume)]


def mt5_rows(df: pd.DataFrame) -> list[str]:
    t = pd.to_datetime(df.time)
    head = "\t".join(f"<{c}>" for c in ("DATE", "TIME", "OPEN", "HIGH", "LOW", "CLOSE", "TICKVOL", "VOL", "SPREAD"))
    return [head] + [f"{a}\t{b}\t{o!r}\t{h!r}\t{lo!r}\t{c!r}\t{v}\t0\t{7 + i % 5}" for i, (a, b, o, h, lo, c, v) in
                     enumerate(zip(t.dt.strftime("%Y.%m.%d"), t.dt.strftime("%H:%M:%S"), df.open, df.high,
                                   df.low, df.close, df.volume))]


@pytest.mark.parametrize("fmt,encoding", [("mt4", "utf-8"), ("mt5", "utf-8"), ("mt5", "utf-16"),
                                          ("mt5", "utf-8-sig")])
def test_mt4_and_mt5_exports_round_trip(broker_m15, tmp_path, fmt, encoding):
    want = broker_m15.iloc[:700]  # 2026-01-15 .. 2026-01-22, a weekend inside
    rows = mt4_rows(want) if fmt == "mt4" else mt5_rows(want)
    src = write_lines(tmp_path / f"EURUSD_M15_{fmt}.csv", rows, encoding)
    bars, report = cv.import_sources(fmt, [src], tz="Europe/Athens")
    assert (report.timeframe, report.symbol, report.warnings) == ("M15", "EURUSD", [])
    assert report.clock["clock"] == "broker"
    for out in ("o.csv.gz", "o.parquet"):
        cv.write_bars(bars, tmp_path / out, timeframe_s=900)
    assert_file_holds(tmp_path / "o.csv.gz", want, "Europe/Athens", 900)
    # Parquet records the zone: read with any declared zone, the UTC times are the same
    utc = np.concatenate([c.ts for c in read_bars(tmp_path / "o.csv.gz", "Europe/Athens", 900)])
    assert (np.concatenate([c.ts for c in read_bars(tmp_path / "o.parquet", "UTC", 900)]) == utc).all()


def test_mt5_without_tz_is_refused_with_a_guess(broker_m15, tmp_path):
    src = write_lines(tmp_path / "EURUSD_M15.csv", mt5_rows(broker_m15))
    msg = import_error("mt5", [src])
    assert msg.startswith("--tz is required for mt5 files")
    assert "weekly opens at Mon 00:00" in msg and "--tz Europe/Athens?" in msg


def test_a_wrong_tz_is_flagged_by_the_weekly_close(broker_m15, tmp_path):
    src = write_lines(tmp_path / "EURUSD_M15.csv", mt4_rows(broker_m15))
    _, report = cv.import_sources("mt4", [src], tz="UTC")
    assert len(report.warnings) == 1
    assert "the week usually closes 2 hours after Friday 17:00 New York" in report.warnings[0]
    assert "is --tz right?" in report.warnings[0] and "Europe/Athens" in report.warnings[0]


# --- bad input: one message naming the file and the line ---------------------------------


GOOD = ["20180604 100000;1.170000;1.171000;1.169000;1.170500;0",
        "20180604 100100;1.170500;1.171000;1.170000;1.170800;0",
        "20180604 100200;1.170800;1.171200;1.170100;1.171000;0"]


@pytest.mark.parametrize("bad,why", [
    ("hello world", "line 2: has fewer than 6 fields"),
    ("20180604 1001;1.1;1.2;1.0;1.1;0", "line 2: time '20180604 1001' is not a date-time like 20190101 170200"),
    ("20180604 100100;abc;1.2;1.0;1.1;0", "line 2: open 'abc' is not a number"),
    ("20180604 100100;1.1;1.2;1.0;1.1;0;7", "line 2: 7 fields, expected 6"),
    ("20180604 100100;1.1;1.05;1.0;1.1;0", "line 2: high 1.05 is below max(open, close) = 1.1"),
    ("20180604 100100;1.1;1.2;1.15;1.1;0", "line 2: low 1.15 is above min(open, close) = 1.1"),
    ("20180604 100100;-1.1;1.2;1.0;1.1;0", "line 2: open -1.1 is not a positive price"),
    ("20180604 100100;1.1;;1.0;1.1;0", "line 2: high is empty"),
    ("20180604 100100;1.1;1.2;1.0;1.1;-3", "line 2: volume '-3' is not a non-negative number"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, bad, why):
    src = write_lines(tmp_path / "EURUSD.csv", [GOOD[0], bad, GOOD[2]])
    assert import_error("histdata", [src]) .startswith(f"{src}: {why}")


def test_files_that_are_not_bar_exports(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert import_error("histdata", [empty]) == f"{empty}: the file is empty"
    assert import_error("histdata", [tmp_path]) == f"{tmp_path}: is a folder, not a file"
    assert import_error("histdata", [tmp_path / "nope.csv"]) == f"{tmp_path / 'nope.csv'}: no such file"
    blank = write_lines(tmp_path / "blank.csv", ["", "  ", ""])
    assert import_error("histdata", [blank]) == f"{blank}: holds no bars"
    binary = tmp_path / "garbage.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    assert import_error("histdata", [binary]).startswith(f"{binary}: line 1: ")
    assert import_error("csv", [binary]) == "unknown format 'csv' (expected histdata, mt4, mt5)"
    mt5 = write_lines(tmp_path / "x.csv", GOOD)
    assert "line 1: header" in import_error("mt5", [mt5], tz="UTC")


def test_mixed_timeframes_are_refused(broker_m15, tmp_path):
    h1 = pd.read_csv(need(BROKER / "EURUSD_H1.csv"), nrows=200)
    a = write_lines(tmp_path / "EURUSD15.csv", mt4_rows(broker_m15.iloc[:200]))
    b = write_lines(tmp_path / "EURUSD60.csv", mt4_rows(h1))
    msg = import_error("mt4", [a, b], tz="Europe/Athens")
    assert msg == f"the files hold different timeframes: {a} (M15), {b} (H1)"
    rows = mt4_rows(broker_m15.iloc[:20])
    rows.insert(5, rows[4].replace(rows[4].split(",")[1], rows[4].split(",")[1][:3] + "20"))  # 5 min later
    c = write_lines(tmp_path / "EURUSD.csv", rows)
    msg = import_error("mt4", [c], tz="Europe/Athens")
    assert msg.startswith(f"{c}: line 6: bar 2026-01-15 15:20:00 is 300 s after") and "but most bars are 900 s apart (M15): mixed timeframes?" in msg


def test_local_times_that_do_not_exist_in_the_zone_are_refused(tmp_path):
    # Europe/Athens springs from 03:00 to 04:00 on 2026-03-29
    rows = [f"2026.03.29,{hm},1.1,1.2,1.0,1.1,5" for hm in ("02:30", "02:45", "03:00", "03:15", "04:00")]
    src = write_lines(tmp_path / "EURUSD.csv", rows)
    msg = import_error("mt4", [src], tz="Europe/Athens")
    assert msg.startswith("2 bar(s) at local times that do not exist or are ambiguous in Europe/Athens")
    assert f"2026-03-29 03:00:00 ({src}: line 3)" in msg
    bars, _ = cv.import_sources("mt4", [src], tz="UTC")
    assert len(bars) == 5


def test_symbols_in_file_names_must_agree(tmp_path):
    a = write_lines(tmp_path / "DAT_ASCII_EURUSD_M1_2018.csv", GOOD)
    b = write_lines(tmp_path / "DAT_ASCII_GBPUSD_M1_2019.csv", GOOD)
    assert "name different symbols: EURUSD (DAT_ASCII_EURUSD_M1_2018.csv), GBPUSD" in import_error("histdata", [a, b])
    assert import_error("histdata", [a], symbol="GBPUSD") == f"{a}: the file name says EURUSD, but the import is GBPUSD"
    assert "the file name says USDJPY" in import_error("histdata", [a], out=tmp_path / "USDJPY_M1.csv")
    assert "six-letter" in import_error("histdata", [a], symbol="EUR")
    assert cv.symbol_in_name("HISTDATA_COM_ASCII_EURUSD_M12018.zip") == "EURUSD"
    assert cv.symbol_in_name("gbpjpy1.csv") == "GBPJPY" and cv.symbol_in_name("BROKER_M1.csv") is None


# --- writing ---------------------------------------------------------------------------------


def some_bars(tz=NY) -> cv.Bars:
    ts = np.array([1528106400 + 60 * i for i in range(5)], dtype=np.int64)  # 2018-06-04 10:00..
    p = np.full(5, 1.17)
    return cv.Bars(ts, p, p + 0.001, p - 0.001, p, np.zeros(5), tz)


def test_writes_refuse_to_overwrite_without_force_and_leave_nothing_on_failure(tmp_path):
    out = tmp_path / "EURUSD_M1.csv.gz"
    cv.write_bars(some_bars(), out, timeframe_s=60)
    first = out.read_bytes()
    with pytest.raises(cv.ConvertError, match="exists; pass --force"):
        cv.write_bars(some_bars(), out, timeframe_s=60)
    cv.write_bars(some_bars(), out, force=True, timeframe_s=60)
    assert out.read_bytes() == first  # same bars, same bytes (gzip without a timestamp)
    # a bar at a local time New York skips (2018-03-11 02:30) cannot be written zone-aware
    bad = some_bars()
    bad.ts[2] = int(pd.Timestamp("2018-03-11 02:30").timestamp())
    bad.ts[3:] = bad.ts[2] + 60 * np.arange(1, 3)
    with pytest.raises(cv.ConvertError, match="does not exist or is ambiguous in America/New_York"):
        cv.write_bars(bad, tmp_path / "x.parquet")
    # and one that bars.py rejects is caught by the read-back, before the rename
    with pytest.raises(cv.ConvertError, match="would not load in deskd .*nothing written"):
        cv.write_bars(bad, tmp_path / "x.csv", timeframe_s=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["EURUSD_M1.csv.gz"]
    for name, why in (("x.txt", "must end with .csv, .csv.gz or .parquet"), ("", "is a folder"),
                      ("no/such/x.csv", "does not exist")):
        with pytest.raises(cv.ConvertError, match=why):
            cv.write_bars(some_bars(), tmp_path / name)


# --- resampling ----------------------------------------------------------------------------


def test_resampling_m1_gives_the_published_m15_across_a_dst_change(m1, tmp_path):
    """SOURCES.md: M15 was built from the cleaned M1 in New York time, bars labelled by their
    start, no empty bars. Slice edges on whole M15 bars; US DST began 2017-03-12."""
    start, end = "2017-03-08 09:00", "2017-03-17 13:45"
    src = cv.write_bars(_bars_of(between(m1, start, end)), tmp_path / "EURUSD_M1.csv", timeframe_s=60)
    m15 = cv.resample(cv.load_bar_file(src), "M15")
    out = cv.write_bars(m15, tmp_path / "EURUSD_M15.csv", timeframe_s=900)
    assert_file_holds(out, between(pd.read_csv(need(M15)), start, end), NY, 900)


def test_a_slice_starting_inside_a_bucket_gives_a_partial_first_bar(m1):
    bars = _bars_of(between(m1, "2017-03-08 09:07", "2017-03-08 10:00"))
    m15 = cv.resample(bars, "M15")
    assert cv.wall_str(m15.ts[0]) == "2017-03-08 09:00:00" and m15.open[0] == bars.open[0]


def test_sunday_open_falls_in_the_bucket_holding_it(m1):
    """The convention: buckets aligned to midnight of the file's clock, labelled by their start.
    New York's Sunday 17:00 open is inside the H4 bar labelled 16:00 and starts the H1 17:00."""
    week = between(m1, "2018-06-08 12:00", "2018-06-11 00:00")  # Friday noon to Sunday night
    bars = _bars_of(week)
    h4 = cv.resample(bars, "H4")
    labels = [cv.wall_str(t) for t in h4.ts]
    assert labels == ["2018-06-08 12:00:00", "2018-06-08 16:00:00", "2018-06-10 16:00:00", "2018-06-10 20:00:00"]
    sunday = between(week, "2018-06-10 16:00", "2018-06-10 20:00")
    assert sunday.time[0] == "2018-06-10 17:00:00"
    assert (h4.open[2], h4.high[2], h4.low[2], h4.close[2]) == (
        sunday.open[0], sunday.high.max(), sunday.low.min(), sunday.close.iloc[-1])
    h1 = cv.resample(bars, "H1")
    assert "2018-06-10 17:00:00" in [cv.wall_str(t) for t in h1.ts]
    assert "2018-06-10 16:00:00" not in [cv.wall_str(t) for t in h1.ts]  # no empty bars


def test_broker_files_resample_in_their_own_clock_and_keep_their_zone(broker_m15, tmp_path):
    bars, _ = cv.import_sources("mt4", [write_lines(tmp_path / "EURUSD.csv", mt4_rows(broker_m15))],
                                tz="Europe/Athens")
    src = cv.write_bars(bars, tmp_path / "EURUSD_M15.parquet", timeframe_s=900)
    loaded = cv.load_bar_file(src)
    assert loaded.tz == "Europe/Athens" and (loaded.ts == bars.ts).all()
    h4 = cv.resample(loaded, "H4")
    assert all(cv.wall_str(t)[11:] in {"00:00:00", "04:00:00", "08:00:00", "12:00:00", "16:00:00", "20:00:00"}
               for t in h4.ts)
    assert "2026-01-19 00:00:00" in [cv.wall_str(t) for t in h4.ts]  # Monday's open, broker time
    out = cv.write_bars(h4, tmp_path / "EURUSD_H4.parquet", timeframe_s=14400)
    assert cv.recorded_zone(out) == "Europe/Athens"
    assert int(h4.volume.sum()) == int(broker_m15.volume.sum())


@pytest.mark.parametrize("target,why", [("M5", "cannot be resampled to M5"), ("D1", "expected one of M1, M5"),
                                        ("M15", "cannot be resampled to M15")])
def test_resampling_needs_a_finer_source(broker_m15, target, why):
    with pytest.raises(cv.ConvertError, match=why):
        cv.resample(_bars_of(broker_m15.iloc[:50]), target)


def test_a_source_bar_off_its_grid_is_refused():
    b = some_bars()
    b.ts[1:] += 30
    b.ts[0] -= 60
    with pytest.raises(cv.ConvertError, match="bar 2018-06-04 10:01:30 is not on the M1 grid"):
        cv.resample(b, "M5")


# --- info --------------------------------------------------------------------------------------


def test_describe_m1_new_york(m1):
    d = cv.describe(_bars_of(between(m1, "2018-01-01", "2018-07-01")))
    assert (d["timeframe"], d["clock"]["clock"], d["clock"]["zone"]) == ("M1", "new_york", NY)
    assert d["weekends"] == 25 and d["gaps"]["count"] > 0  # Jan 5/7 .. Jun 22/24
    assert all(g["missing_bars"] > 0 for g in d["gaps"]["longest"])


def test_describe_the_same_bars_in_utc(m1):
    ny = _bars_of(between(m1, "2018-01-01", "2018-07-01"))
    utc = cv.Bars(cv._to_utc(ny.ts, NY), ny.open, ny.high, ny.low, ny.close, ny.volume)
    clock = cv.describe(utc)["clock"]
    assert clock["clock"] == "utc" and set(clock["weekly_opens"]) >= {"Sun 21:00", "Sun 22:00"}


@pytest.mark.parametrize("name", ["EURUSD_M5.csv", "GBPUSD_M15.csv", "USDJPY_H1.csv"])
def test_describe_mt5_files_as_broker_time(name):
    d = cv.describe(cv.load_bar_file(need(BROKER / name)))
    assert d["clock"]["clock"] == "broker" and d["clock"]["zone"] == "Europe/Athens"
    assert d["timeframe"] == name.split("_")[1][:-4]


def test_weekend_is_not_a_gap_in_any_clock():
    fri, sun, mon = (int(pd.Timestamp(t).timestamp()) for t in ("2018-06-08 16:59", "2018-06-10 17:00",
                                                               "2018-06-11 00:00"))
    assert list(cv.weekend_breaks(np.array([fri, sun]))) == [1]
    assert list(cv.weekend_breaks(np.array([fri + 7 * 3600, mon]))) == [1]  # broker: Fri 23:59 -> Mon 00:00
    assert list(cv.weekend_breaks(np.array([fri - 86400, fri]))) == []  # Thursday -> Friday


def _bars_of(df: pd.DataFrame) -> cv.Bars:
    ts = pd.to_datetime(df.time).to_numpy().astype("datetime64[s]").astype(np.int64)
    return cv.Bars(ts, df.open.to_numpy(float), df.high.to_numpy(float), df.low.to_numpy(float),
                   df.close.to_numpy(float), df.volume.to_numpy(float), None)


def test_no_temporary_file_is_left_when_the_read_back_fails(tmp_path, monkeypatch):
    """The read-back failing mid-way (here: forced) leaves neither the output nor the temp file."""
    def boom(*a, **k):
        raise cv.BarFileError("forced")
    monkeypatch.setattr(cv, "read_bars", boom)
    with pytest.raises(cv.ConvertError, match="forced"):
        cv.write_bars(some_bars(), tmp_path / "o.csv.gz")
    assert os.listdir(tmp_path) == []
