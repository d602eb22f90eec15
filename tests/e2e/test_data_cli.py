"""``deskd data import | resample | info`` as a process, on real bars: results on stdout, progress on
stderr, and bad input as one ``deskd: error:`` line (file and line), exit 2, nothing written.

Runs ``deskd.data_commands.main`` in a fresh interpreter (what ``deskd data ...`` runs once
deskd.cli registers the verbs). Real files from shared/data beside the repository; tests that
need them skip with the reason when it is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

DATA = ROOT.parent / "shared" / "data"
M1 = DATA / "fx_m1" / "EURUSD_M1.csv.gz"
M15 = DATA / "fx_m1" / "EURUSD_M15.csv.gz"
BROKER = DATA / "fx"
MAIN = "import sys; from deskd.data_commands import main; sys.exit(main(sys.argv[1:]))"


def data(*args) -> subprocess.CompletedProcess:
    """``deskd data ARGS...``, captured."""
    return subprocess.run([sys.executable, "-c", MAIN, "data", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def need(path):
    if not path.exists():
        pytest.skip(f"{path} absent: the real bar files live in shared/data beside the repository")
    return path


@pytest.fixture(scope="module")
def m1_head() -> pd.DataFrame:
    """The first 2017 weeks of EURUSD M1 (New York time), through 2017-03-25."""
    return pd.read_csv(need(M1), nrows=90_000)


def between(df, start, end):
    return df[(df.time >= start) & (df.time < end)].reset_index(drop=True)


def histdata_file(path, df):
    t = df.time.str.replace("-", "").str.replace(":", "")
    path.write_text("".join(f"{a};{o:.6f};{h:.6f};{lo:.6f};{c:.6f};0\n"
                            for a, o, h, lo, c in zip(t, df.open, df.high, df.low, df.close)))
    return path


def test_import_histdata_files_writes_the_same_bars(m1_head, tmp_path):
    """Two weeks across the start of US daylight saving (2017-03-12), split in two files."""
    want = between(m1_head, "2017-03-05", "2017-03-18")
    a = histdata_file(tmp_path / "DAT_ASCII_EURUSD_M1_201703a.csv", between(want, "2017-03-05", "2017-03-11"))
    b = histdata_file(tmp_path / "DAT_ASCII_EURUSD_M1_201703b.csv", between(want, "2017-03-11", "2017-03-18"))
    out = tmp_path / "EURUSD_M1.csv.gz"
    p = data("import", "histdata", b, a, "--to", out)
    assert p.returncode == 0, p.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out), want, check_dtype=False)
    assert f"{len(want):,} M1 bars written to {out}" in p.stdout
    assert "declare data.timezone: America/New_York" in p.stdout and "findings" in p.stdout
    assert p.stderr == ""  # a quick job prints no progress
    again = data("import", "histdata", a, b, "--to", out)
    assert (again.returncode, again.stderr) == (2, f"deskd: error: {out}: exists; pass --force to replace it\n")
    forced = data("import", "histdata", a, b, "--to", out, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert (report["bars"], report["timeframe"], report["symbol"], report["tz"]) == (
        len(want), "M1", "EURUSD", "America/New_York")
    assert report["clock"]["clock"] == "new_york" and report["dst_shifted_weeks"] == []


def test_a_long_import_shows_progress_on_stderr(tmp_path):
    """A year of M1 (HistData's 2017 file, rebuilt): a line per step on stderr (no terminal)."""
    year = pd.read_csv(need(M1), nrows=371_635)
    src = histdata_file(tmp_path / "DAT_ASCII_EURUSD_M1_2017.csv", year)
    out = tmp_path / "EURUSD_M1.csv.gz"
    p = data("import", "histdata", src, "--to", out)
    assert p.returncode == 0, p.stderr
    assert f"deskd data import: checking {out} loads in deskd\n" in p.stderr
    assert all(line.startswith("deskd data import: ") for line in p.stderr.splitlines())
    assert "371,635 M1 bars written" in p.stdout


def test_registering_the_verbs_loads_no_heavy_library():
    """deskd --help stays fast once deskd.cli registers `data`: the library loads in the verbs."""
    code = ("import argparse, sys; from deskd.data_commands import add_parser; "
            "add_parser(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow', 'numpy', 'pydantic', 'rich'}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (p.returncode, p.stdout.strip()) == (0, "[]"), p.stderr


def test_the_help_names_match_the_library():
    from deskd.adapters import convert
    from deskd.configs.models import TIMEFRAME_SECONDS
    from deskd.data_commands import DEFAULT_ZONES, FORMAT_NAMES, TIMEFRAMES

    assert FORMAT_NAMES == tuple(convert.FORMATS) and DEFAULT_ZONES == convert.DEFAULT_TZ
    assert TIMEFRAMES == tuple(TIMEFRAME_SECONDS)


def test_progress_lines_wait_for_a_slow_job(capsys):
    from deskd.data_commands import _StderrProgress

    with _StderrProgress("import", after_s=0) as now, _StderrProgress("info", after_s=3600) as later:
        for progress in (now, later):
            progress.stage("reading x")
            progress.rows(10)
    assert capsys.readouterr().err == "deskd data import: reading x\n"


def test_import_mt5_to_parquet_records_the_zone(tmp_path):
    bars = pd.read_csv(need(BROKER / "EURUSD_M15.csv"), nrows=700)
    t = pd.to_datetime(bars.time)
    src = tmp_path / "EURUSD_M15_export.csv"
    src.write_text("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n" + "".join(
        f"{d}\t{hm}\t{o!r}\t{h!r}\t{lo!r}\t{c!r}\t{v}\t0\t12\n" for d, hm, o, h, lo, c, v in zip(
            t.dt.strftime("%Y.%m.%d"), t.dt.strftime("%H:%M:%S"), bars.open, bars.high, bars.low, bars.close,
            bars.volume)))
    out = tmp_path / "EURUSD_M15.parquet"
    p = data("import", "mt5", src, "--to", out, "--tz", "Europe/Athens")
    assert p.returncode == 0, p.stderr
    assert "Europe/Athens (recorded in the Parquet file)" in p.stdout
    got = pd.read_parquet(out)
    assert str(got.time.dt.tz) == "Europe/Athens"
    assert list(got.time.dt.strftime("%Y-%m-%d %H:%M:%S")) == list(bars.time)
    assert (got.volume.to_numpy() == bars.volume.to_numpy()).all()
    info = json.loads(data("info", out, "--json").stdout)
    assert (info["time_zone"], info["timeframe"], info["clock"]["clock"]) == ("Europe/Athens", "M15", "broker")


def test_resample_m1_slice_equals_the_published_m15(m1_head, tmp_path):
    """SOURCES.md built M15 from this M1 in New York time; a slice cut on whole M15 bars."""
    src = tmp_path / "EURUSD_M1.csv"
    between(m1_head, "2017-03-01 00:00", "2017-03-24 12:00").to_csv(src, index=False)
    out = tmp_path / "EURUSD_M15.csv.gz"
    p = data("resample", src, "--to-timeframe", "M15", "--out", out)
    assert p.returncode == 0, p.stderr
    want = between(pd.read_csv(need(M15), nrows=8_000), "2017-03-01 00:00", "2017-03-24 12:00")
    pd.testing.assert_frame_equal(pd.read_csv(out), want, check_dtype=False)
    assert f"{len(want):,} M15 bars written to {out}" in p.stdout


def test_info_on_the_m1_file_finds_m1_in_new_york_time():
    p = data("info", need(M1), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert (info["bars"], info["first"], info["last"]) == (1_116_712, "2017-01-02 02:00:00", "2019-12-31 16:59:00")
    assert (info["timeframe"], info["clock"]["clock"], info["clock"]["zone"]) == ("M1", "new_york",
                                                                                  "America/New_York")
    assert info["weekends"] == 156 and info["price"]["low"] == 1.03406 and info["price"]["high"] == 1.2555
    # the longest gaps outside weekends are the holidays of SOURCES.md, not weekends
    assert info["gaps"]["longest"][0]["after"] == "2018-12-31 16:59:00"


@pytest.mark.parametrize("name", sorted(p.name for p in BROKER.glob("*.csv")) or ["EURUSD_M15.csv"])
def test_info_on_the_mt5_files_finds_broker_time(name):
    p = data("info", need(BROKER / name))
    assert p.returncode == 0, p.stderr
    assert "broker server time (Europe/Athens-like" in p.stdout and "data.timezone: Europe/Athens" in p.stdout
    assert f"timeframe     │ {name.split('_')[1][:-4]} " in p.stdout


# --- bad input: one line, exit 2, nothing written ------------------------------------------


GOOD = "20180604 100000;1.170000;1.171000;1.169000;1.170500;0\n"


@pytest.fixture
def bad(tmp_path) -> dict:
    """Files of each kind of bad input, and ``out``: a target in an empty folder."""
    f = {"garbage": tmp_path / "garbage.csv", "empty": tmp_path / "empty.csv", "folder": tmp_path / "folder",
         "m15": tmp_path / "m15.csv", "h1": tmp_path / "h1.csv", "mixed": tmp_path / "mixed.csv",
         "out": tmp_path / "out" / "EURUSD_M1.csv.gz"}
    f["garbage"].write_text(GOOD + "20180604 100100;1.1;1.2;oops;1.1;0\n")
    f["empty"].write_text("")
    f["folder"].mkdir()
    f["out"].parent.mkdir()
    f["m15"].write_text("".join(f"2026.01.15,{h:02d}:{m:02d},1.1,1.2,1.0,1.1,5\n" for h in (10, 11)
                                for m in (0, 15, 30, 45)))
    f["h1"].write_text("".join(f"2026.01.16,{h:02d}:00,1.1,1.2,1.0,1.1,5\n" for h in range(10, 16)))
    f["mixed"].write_text("time,open,high,low,close\n" + "".join(
        f"2026-01-15 10:{m:02d}:00,1.1,1.2,1.0,1.1\n" for m in (0, 15, 30, 45, 50)))
    return f


#: (arguments, the start of the one error line); {name} is a file of the ``bad`` fixture
BAD = {
    "unknown format": ("import bogus {garbage} --to {out}",
                       "unknown format 'bogus' (expected histdata, mt4, mt5)"),
    "garbage row": ("import histdata {garbage} --to {out}", "{garbage}: line 2: low 'oops' is not a number"),
    "empty file": ("import histdata {empty} --to {out}", "{empty}: the file is empty"),
    "a folder": ("import histdata {folder} --to {out}", "{folder}: is a folder, not a file"),
    "mixed timeframe files": ("import mt4 {m15} {h1} --to {out} --tz UTC",
                              "the files hold different timeframes: {m15} (M15), {h1} (H1)"),
    "mixed timeframes in a file": ("resample {mixed} --to-timeframe H1 --out {out}",
                                   "{mixed}: line 6: bar 2026-01-15 10:50:00 is 300 s after"),
    "mt4 without --tz": ("import mt4 {m15} --to {out}", "--tz is required for mt4 files"),
    "unknown zone": ("import mt4 {m15} --to {out} --tz Mars/Olympus", "--tz: unknown IANA timezone 'Mars/Olympus'"),
    "output is a folder": ("import histdata {garbage} --to {folder}", "{folder}: is a folder"),
    "not a bar file": ("resample {m15} --to-timeframe H1 --out {out}", "{m15}: missing column(s)"),
    "unknown timeframe": ("resample {mixed} --to-timeframe W1 --out {out}", "--to-timeframe 'W1': expected one of"),
    "info on a folder": ("info {folder}", "{folder}: is a folder, not a file"),
    "info on an empty file": ("info {empty}", "{empty}: the file is empty"),
    "info on a raw file": ("info {garbage}", "{garbage}: missing column(s) time, open, high, low, close"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(bad, case):
    args, says = BAD[case]
    p = data(*args.format(**bad).split())
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("deskd: error: " + says.format(**bad)), p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout == ""
    assert list(bad["out"].parent.iterdir()) == []  # no output, no temporary file
