"""`deskd backtest` prints its summary in 80 columns with every number whole (COLUMNS=80, as a
narrow terminal sets it), and --json stays the machine-readable answer."""

import json

from tests.conftest import EXAMPLE, run


def test_the_backtest_summary_fits_80_columns_with_every_number_whole(tmp_path):
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "o"), env={"COLUMNS": "80"})
    lines = p.stdout.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 80, p.stdout  # the last line names the output folder
    assert "…" not in p.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    for scn, r in report["scenarios"].items():
        row = next(line for line in lines if line.startswith(f" {scn} "))
        assert f"{r['overall']['trades']:,}" in row and f"{r['overall']['net_pnl_usd']:,.0f}" in row
    assert "S1_TREND_EMA_ATR_ADX" in p.stdout and "wiped out" not in p.stdout
    j = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "j"), "--scenarios", "A", "--json")
    assert json.loads(j.stdout)["scenarios"]["A"]["trades"] == report["scenarios"]["A"]["overall"]["trades"]
