"""systemd/deskd.service: valid for systemd, and its ExecStart is the real deskd command."""

import shlex
import shutil
import subprocess
from pathlib import Path

from deskd.cli import build_parser
from tests.conftest import deskd_cmd, require_tool

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "deskd.service"


def exec_start() -> list[str]:
    lines = [ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


def ensure_systemd_analyze() -> str:
    return require_tool(shutil.which("systemd-analyze"), "systemd-analyze", "systemd")


def test_exec_start_is_the_deskd_run_command_with_valid_arguments():
    argv = exec_start()
    assert Path(argv[0]).name == "deskd" and argv[1] == "run"
    args = build_parser().parse_args(argv[1:])  # exits on an unknown option
    assert args.func.__name__ == "cmd_run" and args.api_host == "127.0.0.1"
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "EnvironmentFile=" in text
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
    assert "TOKEN" not in "".join(argv)  # the token comes from the EnvironmentFile only


def test_systemd_analyze_verify_passes_without_warnings(tmp_path):
    analyze = ensure_systemd_analyze()
    # verify checks that ExecStart's binary exists: point it at this install's deskd
    unit = tmp_path / "deskd.service"
    unit.write_text(UNIT.read_text().replace(exec_start()[0], deskd_cmd()[0]))
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Unknown" not in p.stderr and "ignoring" not in p.stderr, p.stderr
