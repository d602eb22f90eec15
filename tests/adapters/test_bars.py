"""Bar files: formats, timezones, merge order, and a clear error for each kind of bad input."""

import gzip

import pandas as pd
import pytest

from deskd.adapters.bars import OFFSETS_BASIS, BarFileError, read_bars, scan_bars, time_basis
from deskd.adapters.replay import ReplayFeed

HEADER = "time,open,high,low,close,volume\n"
GOOD = ["2026-01-15 10:00:00,1.1000,1.1010,1.0990,1.1005,10",
        "2026-01-15 10:15:00,1.1005,1.1012,1.1001,1.1008,12",
        "2026-01-15 10:30:00,1.1008,1.1020,1.1004,1.1015,9"]


def write(tmp_path, rows, header=HEADER, name="EURUSD_M15.csv"):
    p = tmp_path / name
    p.write_text(header + "\n".join(rows) + "\n")
    return p


def load(path, tz="UTC", tf=900):
    return [c for c in read_bars(path, tz, tf)]


def error(tmp_path, rows, header=HEADER, tz="UTC"):
    with pytest.raises(BarFileError) as e:
        load(write(tmp_path, rows, header), tz)
    return str(e.value)


def test_times_are_converted_from_the_declared_timezone_to_utc(tmp_path):
    (c,) = load(write(tmp_path, GOOD), tz="America/New_York")
    assert pd.Timestamp(c.ts[0], unit="s") == pd.Timestamp("2026-01-15 15:00:00")  # EST = UTC-5
    (c,) = load(write(tmp_path, GOOD), tz="Europe/Athens")
    assert pd.Timestamp(c.ts[0], unit="s") == pd.Timestamp("2026-01-15 08:00:00")  # EET = UTC+2


def test_gzip_and_parquet_read_like_plain_csv(tmp_path):
    plain = load(write(tmp_path, GOOD))[0]
    gz = tmp_path / "b.csv.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(HEADER + "\n".join(GOOD) + "\n")
    pq = tmp_path / "b.parquet"
    df = pd.read_csv(write(tmp_path, GOOD))
    df["time"] = pd.to_datetime(df["time"])
    df.to_parquet(pq)
    for other in (load(gz)[0], load(pq)[0]):
        assert list(other.ts) == list(plain.ts) and list(other.close) == list(plain.close)


def test_volume_is_optional(tmp_path):
    rows = [r.rsplit(",", 1)[0] for r in GOOD]
    (c,) = load(write(tmp_path, rows, header="time,open,high,low,close\n"))
    assert list(c.volume) == [0, 0, 0]


@pytest.mark.parametrize("row,expect", [
    ("2026-01-15 10:45:00,1.1,1.2,abc,1.1,0", "line 5: low is not a finite number ('abc')"),
    ("2026-01-15 10:45:00,1.1,1.2,,1.1,0", "line 5: low is empty"),
    ("2026-01-15 10:45:00,1.1,1.2,nan,1.1,0", "line 5: low is not a finite number"),
    ("2026-01-15 10:45:00,1.1,1.2,-1,1.1,0", "line 5: low -1.0 is not a positive price"),
    ("2026-01-15 10:45:00,1.1,1.105,1.09,1.11,0", "line 5: high 1.105 is below max(open, close)"),
    ("2026-01-15 10:45:00,1.1,1.2,1.101,1.11,0", "line 5: low 1.101 is above min(open, close)"),
    ("yesterday,1.1,1.2,1.0,1.1,0", "line 5: time 'yesterday' is not a date-time"),
    ("2026-01-15 10:30:00,1.1,1.2,1.0,1.1,0", "line 5: time '2026-01-15 10:30:00' duplicates"),
    ("2026-01-15 10:00:00,1.1,1.2,1.0,1.1,0", "line 5: time '2026-01-15 10:00:00' is earlier"),
    ("2026-01-15 10:35:00,1.1,1.2,1.0,1.1,0", "less than the 900 s timeframe"),
    ("2026-01-15 10:45:00,1.1,1.2,1.0,1.1,-5", "line 5: volume '-5'"),
])
def test_bad_row_is_named_by_file_line_and_problem(tmp_path, row, expect):
    msg = error(tmp_path, GOOD + [row])
    assert msg.startswith(str(tmp_path / "EURUSD_M15.csv")) and expect in msg


def test_missing_columns_are_listed(tmp_path):
    msg = error(tmp_path, ["2026-01-15 10:00:00,1.1,1.2"], header="time,open,high\n")
    assert "missing column(s) low, close" in msg


def test_local_time_skipped_by_dst_is_rejected(tmp_path):
    rows = ["2026-03-08 01:45:00,1.1,1.2,1.0,1.1,0", "2026-03-08 02:30:00,1.1,1.2,1.0,1.1,0"]
    msg = error(tmp_path, rows, tz="America/New_York")
    assert "line 3: local time 2026-03-08 02:30:00 is ambiguous or does not exist" in msg


def test_empty_and_missing_files(tmp_path):
    assert "holds no bars" in error(tmp_path, [], header=HEADER)
    with pytest.raises(BarFileError, match="no such bar file"):
        load(tmp_path / "missing.csv")


def test_error_in_a_later_chunk_names_the_right_line(tmp_path):
    rows = [f"2026-01-15 {h:02d}:{m:02d}:00,1.1,1.2,1.0,1.1,0" for h in range(10, 20) for m in (0, 15, 30, 45)]
    rows[30] = rows[30].replace("1.2,1.0", "1.2,0")
    p = write(tmp_path, rows)
    with pytest.raises(BarFileError, match="line 32: low"):
        list(read_bars(p, "UTC", 900, chunk_rows=7))


def test_unsorted_across_a_chunk_boundary_is_caught(tmp_path):
    rows = GOOD + ["2026-01-15 10:15:00,1.1,1.2,1.0,1.1,0"]
    p = write(tmp_path, rows)
    with pytest.raises(BarFileError, match="line 5"):
        list(read_bars(p, "UTC", 900, chunk_rows=2))


def test_replay_merges_symbols_in_time_then_universe_order(tmp_path):
    a = write(tmp_path, GOOD, name="A.csv")
    b = write(tmp_path, GOOD[1:] + ["2026-01-15 10:45:00,1.1,1.2,1.0,1.1,0"], name="B.csv")
    feed = ReplayFeed({"USDJPY": str(b), "EURUSD": str(a)}, "UTC", 900, chunk_rows=2)
    got = [(int(k), int(t)) for ch in feed.chunks() for k, t in zip(ch.sym, ch.ts)]
    t0 = int(pd.Timestamp("2026-01-15 10:00:00", tz="UTC").timestamp())
    assert got == [(1, t0), (0, t0 + 900), (1, t0 + 900), (0, t0 + 1800), (1, t0 + 1800), (0, t0 + 2700)]
    assert feed.stats["USDJPY"].bars == 3 and feed.stats["EURUSD"].bars == 3


def test_times_with_offsets_across_a_dst_change_are_read_by_their_offsets(tmp_path):
    rows = ["2026-03-06 10:00:00-05:00,1.1,1.2,1.0,1.1,0", "2026-03-09 10:00:00-04:00,1.1,1.2,1.0,1.1,0"]
    (c,) = load(write(tmp_path, rows), tz="Europe/Athens")  # an explicit offset wins over the zone
    assert [pd.Timestamp(t, unit="s") for t in c.ts] == [pd.Timestamp("2026-03-06 15:00:00"),
                                                         pd.Timestamp("2026-03-09 14:00:00")]


def test_a_file_mixing_times_with_and_without_offsets_is_refused_at_the_first_odd_row(tmp_path):
    rows = ["2026-03-06 10:00:00-05:00,1.1,1.2,1.0,1.1,0", "2026-03-06 10:15:00-05:00,1.1,1.2,1.0,1.1,0",
            "2026-03-09 10:00:00,1.1,1.2,1.0,1.1,0", "2026-03-09 10:15:00-04:00,1.1,1.2,1.0,1.1,0"]
    assert "line 4: time '2026-03-09 10:00:00' has no UTC offset" in error(tmp_path, rows)
    p = write(tmp_path, rows[:2] + ["2026-03-09 10:00:00,1.1,1.2,1.0,1.1,0"])
    with pytest.raises(BarFileError, match="line 4: time '2026-03-09 10:00:00' has no UTC offset"):
        list(read_bars(p, "UTC", 900, chunk_rows=2))  # across a chunk boundary too
    p = write(tmp_path, GOOD + ["2026-01-15 10:45:00Z,1.1,1.2,1.0,1.1,0"])
    with pytest.raises(BarFileError, match="line 5: time '2026-01-15 10:45:00Z' carries a UTC offset"):
        list(read_bars(p, "UTC", 900, chunk_rows=3))


@pytest.mark.parametrize("when", ["9999-12-31 10:00:00", "0001-01-01 10:00:00", "1969-12-31 23:45:00",
                                  "2101-01-01 00:00:00+00:00"])
def test_times_outside_the_years_1970_to_2100_are_refused_with_their_line(tmp_path, when):
    msg = error(tmp_path, [f"{when},1.1,1.2,1.0,1.1,0"])
    assert f"line 2: time '{when}' is outside the years 1970-2100" in msg


def test_a_folder_a_symlink_loop_and_a_missing_file_each_say_what_they_are(tmp_path):
    with pytest.raises(BarFileError, match="is a folder, not a bar file"):
        load(tmp_path)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(BarFileError, match="cannot open the bar file: Too many levels of symbolic links"):
        load(tmp_path / "a")
    with pytest.raises(BarFileError, match="no such bar file"):
        load(tmp_path / "missing.csv")


def test_values_echoed_in_errors_are_quoted_escaped_and_bounded(tmp_path):
    huge = "9" * 5_000_000
    msg = error(tmp_path, GOOD + [f"2026-01-15 10:45:00,1.1,1.2,1.0x{huge},1.1,0"])
    assert "line 5: low is not a finite number ('1.0x999" in msg and "(5,000,004 characters)" in msg
    assert len(msg) < 300
    msg = error(tmp_path, GOOD + ["2026-01-15 10:45:00,1.1,1.2,\x1b[2J\x07,1.1,0"])
    assert "\x1b" not in msg and "'\\x1b[2J\\x07'" in msg
    msg = error(tmp_path, ["x"], header="time,\x1b]0;pwned\x07" + "o" * 10_000 + "\n")
    assert "\x1b" not in msg and "\x07" not in msg and len(msg) < 400


def test_time_basis_is_what_the_times_were_read_in(tmp_path):
    assert time_basis(write(tmp_path, GOOD), "America/New_York") == "America/New_York"
    assert time_basis(write(tmp_path, [GOOD[0].replace(":00,", ":00Z,", 1)]), "America/New_York") == OFFSETS_BASIS
    assert time_basis(write(tmp_path, [GOOD[0].replace(":00,", ":00+00:00,", 1)]), "UTC") == OFFSETS_BASIS
    df = pd.read_csv(write(tmp_path, GOOD))
    df["time"] = pd.to_datetime(df["time"]).dt.tz_localize("UTC")
    df.to_parquet(tmp_path / "aware.parquet")
    assert time_basis(tmp_path / "aware.parquet", "America/New_York") == "UTC"


def test_scan_bars_checks_the_whole_file_in_chunks(tmp_path):
    rows = [f"2026-01-15 {h:02d}:{m:02d}:00,1.1,1.2,1.0,1.1,0" for h in range(10, 20) for m in (0, 15, 30, 45)]
    s = scan_bars(write(tmp_path, rows), "UTC", 900, chunk_rows=7)
    assert (s.bars, s.last_ts - s.first_ts) == (40, 39 * 900)
    rows[38] = rows[38].replace("1.2,1.0", "1.2,0")
    with pytest.raises(BarFileError, match="line 40: low"):
        scan_bars(write(tmp_path, rows), "UTC", 900, chunk_rows=7)
