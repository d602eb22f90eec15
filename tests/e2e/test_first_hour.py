"""A new user's first hour with the real `deskd` command (issue #10, section 4): each input
that used to end in a traceback, a wrong answer or a file left behind, one test each."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

from deskd.persistence.store import open_store, sqlite_url
from tests.conftest import EXAMPLE, ROOT, deskd_cmd, run
from tests.daemon.test_reconcile import broker_with_trade, store_with_eurusd_long  # noqa: F401 (a fixture)
from tests.fake_broker import BARS, running

pytestmark = pytest.mark.e2e


def one_error(p: subprocess.CompletedProcess) -> str:
    """The single `deskd: error:` line of a run that exited 2, with no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("deskd: error:")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["backtest", "--help"], ["run", "--help"],
                                  ["status", "--help"]])
def test_version_and_help_do_not_import_pandas_sqlalchemy_or_pydantic(argv):
    code = (f"import sys\nfrom deskd.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'sqlalchemy', 'pydantic', 'structlog') "
            "if m in sys.modules), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stderr.strip().splitlines()[-1] == "[]", p.stderr


def test_reconcile_json_is_pure_json_on_stdout_with_retry_warnings_on_stderr(tmp_path, broker_with_trade):  # noqa: F811
    b = broker_with_trade
    db = tmp_path / "desk.db"
    store_with_eurusd_long(db, 1000, BARS["EURUSD"][5][1], 1.09)
    b.faults.append({"kind": "5xx", "path": "openTrades", "count": 1})
    with running(b) as port:
        p = run("reconcile", "--config", str(EXAMPLE), "--store", str(db), "--json", check=False,
                env={"DESKD_V20_URL": f"http://127.0.0.1:{port}", "DESKD_V20_ACCOUNT": b.account_id,
                     "DESKD_V20_TOKEN": b.token})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["in_sync"] is True
    assert "broker call failed" in p.stderr


def test_reconcile_without_a_store_says_so_and_creates_none(tmp_path):
    env = {"DESKD_V20_URL": "http://127.0.0.1:9", "DESKD_V20_ACCOUNT": "101-001-0000000-001",
           "DESKD_V20_TOKEN": "demo-token", "STATE_DIRECTORY": ""}
    p = subprocess.run([*deskd_cmd(), "reconcile", "--config", str(EXAMPLE)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env={**os.environ, **env})
    assert one_error(p) == f"deskd: error: no store at {tmp_path}/deskd.db (give --store PATH or URL of an " \
                           f"existing store)"
    assert list(tmp_path.iterdir()) == []
    open_store(sqlite_url(tmp_path / "x.db")).dispose()  # an existing store is read as before


SAMPLE = EXAMPLE.parent / "../../data/sample"
SHORT = 1500  # bars per symbol of the short files


@pytest.fixture(scope="module")
def short_files(tmp_path_factory):
    """The sample's first SHORT bars of each symbol, as --data arguments, and their folder."""
    import gzip

    d = tmp_path_factory.mktemp("bars")
    args = []
    for sym in ("EURUSD", "GBPUSD", "USDJPY"):
        with gzip.open(SAMPLE / f"{sym}_M15.csv.gz", "rt") as fh:
            lines = fh.readlines()[: SHORT + 1]
        (d / f"{sym}.csv").write_text("".join(lines))
        args += ["--data", f"{sym}={d / f'{sym}.csv'}"]
    return args, d


def backtest(tmp_path, *extra, cwd=None):
    return subprocess.run([*deskd_cmd(), "backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--quiet",
                           *extra], capture_output=True, text=True, timeout=600, cwd=cwd or tmp_path)


# -- 1. the six tracebacks -------------------------------------------------------------------

@contextlib.contextmanager
def _read_only(folder):
    """``folder`` (mode 0555) made unwritable for this process too when it runs as root, by
    the immutable attribute (chattr +i; skips where the file system has none)."""
    if folder is None or os.geteuid() != 0:
        yield
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available: a 0555 folder stays writable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("case", ["afile/sub", "/proc/deskd-x", "dot-force", "parent-of-cwd",
                                  "holds-the-config", "read-only"])
def test_an_out_that_cannot_take_the_outputs_is_one_error_before_running(tmp_path, short_files, case):
    data, _ = short_files
    work = tmp_path / "work"
    (work / "cfg").mkdir(parents=True)
    (work / "afile").write_text("")
    config = work / "cfg" / "desk.yaml"
    config.write_text(EXAMPLE.read_text().replace("../../data/sample/", f"{SAMPLE.resolve()}/"))
    extra: list[str] = []
    out = {"afile/sub": "afile/sub", "/proc/deskd-x": "/proc/deskd-x", "dot-force": ".",
           "parent-of-cwd": str(tmp_path), "holds-the-config": "cfg", "read-only": "ro/out"}[case]
    if case in ("dot-force", "parent-of-cwd", "holds-the-config"):
        extra.append("--force")
    if case == "read-only":
        (work / "ro").mkdir(mode=0o555)
    before = sorted(p.name for p in work.iterdir())
    with _read_only(work / "ro" if case == "read-only" else None):
        p = subprocess.run([*deskd_cmd(), "backtest", "--config", str(config), *data, "--scenarios", "A",
                            "--out", out, *extra], capture_output=True, text=True, timeout=600, cwd=work)
    line = one_error(p)
    assert out in line or "--out" in line, line
    assert "scenario A" not in p.stderr  # refused before running
    assert sorted(p.name for p in work.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["work"] and list((work / "cfg").iterdir()) == [config]


def test_run_with_an_api_port_out_of_range_is_one_error_and_leaves_no_store(tmp_path, short_files):
    data, _ = short_files
    p = subprocess.run([*deskd_cmd(), "run", "--config", str(EXAMPLE), *data, "--store", "s.db", "--speed", "0",
                        "--api-port", "99999"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert one_error(p) == "deskd: error: --api-port 99999: a TCP port is 1-65535"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:8765", "http://127.0.0.1:99999", "http://"])
def test_status_with_an_api_that_is_not_a_url_is_one_error(url):
    p = run("status", "--api", url, check=False)
    assert one_error(p).startswith(f"deskd: error: --api '{url}': not an http:// URL")


# -- 2. the fake broker's token ----------------------------------------------------------------

def test_fake_broker_takes_the_v20_token_not_the_control_apis(tmp_path):
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DESKD_API_TOKEN": "the-control-api-token-xyz", "DESKD_V20_TOKEN": "demo",
           "DESKD_V20_ACCOUNT": "101-001-0000000-001"}
    fake = subprocess.Popen([*deskd_cmd(), "fake-broker", "--config", str(EXAMPLE), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        json.loads(fake.stdout.readline())  # the banner: serving

        def get(token):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/accounts",
                                         headers={"Authorization": f"Bearer {token}"})
            try:
                return urllib.request.urlopen(req, timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code
        assert get("demo") == 200
        assert get("the-control-api-token-xyz") == 401
    finally:
        fake.terminate()
        assert fake.wait(timeout=30) == 0


# -- 3. a store under a missing folder, and the end-of-data summary ---------------------------

def test_run_creates_the_store_folder_and_prints_a_summary_at_the_end(tmp_path, short_files):
    data, _ = short_files
    p = subprocess.run([*deskd_cmd(), "run", "--config", str(EXAMPLE), *data, "--store", "state/deskd.db",
                        "--speed", "0", "--exit-at-end", "--no-api", "--log-level", "WARNING"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    (line,) = p.stdout.splitlines()
    assert line.startswith(f"end of data: {3 * SHORT:,} bars") and " trades, final equity " in line, line
    assert line.endswith("USD (desk example, scenario A)")


# -- 6. report.json says what each file's times were read in ----------------------------------

def test_report_records_the_timezone_each_file_was_read_in(tmp_path, short_files):
    import pandas as pd

    data, d = short_files
    df = pd.read_csv(d / "EURUSD.csv")
    df["time"] = (pd.to_datetime(df["time"]).dt.tz_localize("Europe/Athens").dt.tz_convert("UTC")
                  .dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    df.to_csv(tmp_path / "EURUSD_utc.csv", index=False)
    data = [*data, "--data", f"EURUSD={tmp_path / 'EURUSD_utc.csv'}"]
    data = data[2:]  # the short EURUSD file replaced, not repeated
    p = backtest(tmp_path, *data, "--out", "out")
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {s: v["timezone"] for s, v in report["data"].items()} == {
        "EURUSD": "UTC offsets in the file", "GBPUSD": "Europe/Athens", "USDJPY": "Europe/Athens"}
    assert report["data"]["EURUSD"]["bars"] == SHORT


# -- 7. fuzzed inputs ---------------------------------------------------------------------------

def test_a_data_path_that_is_a_symlink_loop_or_a_folder_says_what_it_is(tmp_path):
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    line = one_error(backtest(tmp_path, "--data", f"EURUSD={tmp_path / 'a.csv'}", "--out", "o"))
    assert line == f"deskd: error: {tmp_path}/a.csv: cannot open the bar file: Too many levels of symbolic links"
    line = one_error(backtest(tmp_path, "--data", f"EURUSD={tmp_path}", "--out", "o"))
    assert line == f"deskd: error: {tmp_path}: is a folder, not a bar file (name the file in it)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


@pytest.mark.parametrize("flag,value,expect", [
    ("--speed", "nan", "--speed nan: must be 0"), ("--speed", "-1", "--speed -1: must be 0"),
    ("--speed", "inf", "--speed inf: must be 0"),
    ("--reconcile-every", "nan", "--reconcile-every: must be 0 (every tick) or more seconds, not nan"),
    ("--reconcile-every", "inf", "--reconcile-every: must be 0 (every tick) or more seconds, not inf"),
    ("--poll-interval", "inf", "--poll-interval: must be a positive number of seconds, not inf"),
])
def test_run_refuses_speeds_and_intervals_that_are_not_finite_numbers(tmp_path, short_files, flag, value, expect):
    data, _ = short_files
    broker = ["--broker", "http"] if flag != "--speed" else []
    p = subprocess.run([*deskd_cmd(), "run", "--config", str(EXAMPLE), *data, *broker, "--store", "s.db",
                        f"{flag}={value}"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert one_error(p).startswith(f"deskd: error: {expect}")
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_a_file_bad_deep_inside_at_start_up_before_trading(tmp_path, short_files):
    data, d = short_files
    lines = (d / "USDJPY.csv").read_text().splitlines(keepends=True)
    t, o, h, lo, c, *rest = lines[1400].split(",")
    lines[1400] = ",".join([t, o, h, "0", c, *rest])
    (tmp_path / "USDJPY.csv").write_text("".join(lines))
    p = subprocess.run([*deskd_cmd(), "run", "--config", str(EXAMPLE), *data[:4], "--data",
                        f"USDJPY={tmp_path / 'USDJPY.csv'}", "--store", "s.db", "--speed", "0", "--exit-at-end",
                        "--no-api"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one_error(p) == f"deskd: error: {tmp_path}/USDJPY.csv: line 1401: low 0.0 is not a positive price"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["USDJPY.csv"]  # no store: nothing traded


def test_a_huge_or_control_character_value_is_echoed_quoted_and_bounded(tmp_path):
    p = run("backtest", "--config", str(EXAMPLE), "--scenarios", "A\x1b[2J" + "Z" * 100_000,
            "--out", str(tmp_path / "o"), check=False)
    line = one_error(p)
    assert "\x1b" not in p.stderr and len(line) < 400 and "'A\\x1b[2JZZZ" in line


# -- 8. smaller ---------------------------------------------------------------------------------

def test_check_config_checks_the_data_files(tmp_path):
    p = run("check-config", str(EXAMPLE))
    assert "EURUSD: 11,998 bars" in p.stdout and "(times in Europe/Athens)" in p.stdout
    cfg = tmp_path / "desk.yaml"
    text = EXAMPLE.read_text().replace("../../data/sample/GBPUSD_M15.csv.gz", str(tmp_path / "gone.csv"))
    cfg.write_text(text.replace("../../data/sample/", f"{SAMPLE.resolve()}/"))
    assert one_error(run("check-config", str(cfg), check=False)) == \
        f"deskd: error: {tmp_path}/gone.csv: no such bar file"


def test_empty_scenarios_and_a_symbol_given_twice_are_errors(tmp_path, short_files):
    _, d = short_files
    line = one_error(backtest(tmp_path, "--scenarios", "", "--out", "o"))
    assert line.startswith("deskd: error: --scenarios '' names no scenario")
    line = one_error(backtest(tmp_path, "--data", f"EURUSD={d / 'EURUSD.csv'}", "--data", f"eurusd={d / 'GBPUSD.csv'}",
                              "--out", "o"))
    assert line.startswith("deskd: error: --data EURUSD is given twice")
    assert list(tmp_path.iterdir()) == []


def test_a_file_shorter_than_the_warm_up_gets_a_warning(tmp_path, short_files):
    data, d = short_files
    (tmp_path / "EURUSD.csv").write_text("".join((d / "EURUSD.csv").read_text().splitlines(keepends=True)[:6]))
    p = backtest(tmp_path, *data[2:], "--data", f"EURUSD={tmp_path / 'EURUSD.csv'}", "--out", "o")
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("deskd: warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("deskd: warning: EURUSD: 5 bars, fewer than the "), p.stderr
    assert "S1_TREND_EMA_ATR_ADX needs to warm up" in warnings[0]


def test_trades_csv_is_in_trade_id_order_and_the_output_folder_follows_the_umask(tmp_path, short_files):
    import csv

    data, _ = short_files
    p = backtest(tmp_path, *data, "--out", "out")
    assert p.returncode == 0, p.stderr
    with open(tmp_path / "out" / "trades.csv") as fh:
        ids = [int(r["trade_id"]) for r in csv.DictReader(fh)]
    assert len(ids) > 20 and ids == sorted(ids)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


def test_status_reads_as_lines_shows_an_operator_halt_and_json_on_demand(tmp_path, short_files):
    import socket
    import time

    data, _ = short_files
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DESKD_API_TOKEN": "t" * 24, "DESKD_API": f"http://127.0.0.1:{port}"}
    daemon = subprocess.Popen([*deskd_cmd(), "run", "--config", str(EXAMPLE), *data, "--store", "d.db",
                               "--speed", "0", "--api-port", str(port), "--log-level", "WARNING"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        for _ in range(600):
            p = subprocess.run([*deskd_cmd(), "status", "--json"], capture_output=True, text=True, env=env)
            if p.returncode == 0 and json.loads(p.stdout)["feed"]["live_bars"] == 3 * SHORT:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the daemon did not replay its bars: {p.stderr}")
        p = subprocess.run([*deskd_cmd(), "halt", "--reason", "lunch break"], capture_output=True, text=True,
                           env=env)
        assert p.returncode == 0, p.stderr
        p = subprocess.run([*deskd_cmd(), "status"], capture_output=True, text=True, env=env)
        first = p.stdout.splitlines()[0]
        assert first.startswith("desk example/A: HALTED - no new entries (OPERATOR_HALT: operator: lunch break) "
                                "since "), p.stdout
        assert any(ln.startswith("equity ") for ln in p.stdout.splitlines())
        halt = json.loads(subprocess.run([*deskd_cmd(), "status", "--json"], capture_output=True, text=True,
                                         env=env).stdout)["halt"]
        assert halt["trigger"] == "OPERATOR_HALT" and halt["reason"] == "operator: lunch break"
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0, daemon.stderr.read() if daemon.stderr else ""


def test_running_the_readme_leaves_nothing_untracked_in_the_repository():
    paths = ["state/deskd.db", "deskd.db", "demo.db", "fake.json", "deskd-health.json", "runs/sample/report.json"]
    p = subprocess.run(["git", "check-ignore", *paths], capture_output=True, text=True, cwd=ROOT)
    if p.returncode == 128:
        pytest.skip(f"not a git checkout: {p.stderr.strip()}")
    assert p.stdout.split() == paths


def test_the_readme_points_to_design_notes_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "shared/docs" not in readme
    assert "docs/DESIGN.md" in readme and (ROOT / "docs" / "DESIGN.md").is_file()
