"""deskd backtest writes counterfactuals.parquet by default, one row per decision, and
--counterfactuals off writes none and changes no other output of the desk."""

import pyarrow.parquet as pq
import pytest

from tests.conftest import EXAMPLE, run

pytestmark = pytest.mark.e2e


def test_counterfactuals_are_on_by_default_and_off_changes_nothing_else(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    run("backtest", "--config", str(EXAMPLE), "--out", str(on), "--scenarios", "A", "--quiet")
    run("backtest", "--config", str(EXAMPLE), "--out", str(off), "--scenarios", "A", "--quiet",
        "--counterfactuals", "off")
    assert pq.read_metadata(on / "counterfactuals.parquet").num_rows == pq.read_metadata(on / "decisions.parquet").num_rows
    assert not (off / "counterfactuals.parquet").exists()
    for name in ("trades.csv", "equity.csv", "decisions.parquet"):
        assert (on / name).read_bytes() == (off / name).read_bytes(), name
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "bad"), "--counterfactuals", "maybe",
            check=False)
    assert p.returncode == 2 and "--counterfactuals" in p.stderr and "Traceback" not in p.stderr
