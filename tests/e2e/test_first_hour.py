"""A new user's first hour with the real `deskd` command (issue #10, section 4): each input
that used to end in a traceback, a wrong answer or a file left behind, one test each."""

import json
import os
import subprocess
import sys

import pytest

from deskd.persistence.store import open_store, sqlite_url
from tests.conftest import EXAMPLE, deskd_cmd, run
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
