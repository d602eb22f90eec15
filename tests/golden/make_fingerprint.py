"""Fingerprint of a backtest's outputs for the byte-identical regression check.

``python tests/golden/make_fingerprint.py RUN_DIR`` prints the JSON stored in
``tests/golden/sample_outputs.json``. trades.csv, decisions.csv and equity.csv are hashed as
they are; report.json without the fields that legitimately differ between checkouts (the deskd
version, the absolute paths of the data files, and the config's SHA-256, which is taken of the
resolved config and so of those paths).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

FILES = ("trades.csv", "decisions.csv", "equity.csv")


def normalised_report(path: Path) -> bytes:
    report = json.loads(path.read_text())
    report.pop("deskd_version", None)
    report.pop("config_sha256", None)
    for d in report.get("data", {}).values():
        d.pop("path", None)
    return json.dumps(report, sort_keys=True).encode()


def fingerprint(run_dir: Path) -> dict[str, str]:
    out = {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in FILES}
    out["report.json"] = hashlib.sha256(normalised_report(run_dir / "report.json")).hexdigest()
    return out


if __name__ == "__main__":
    print(json.dumps(fingerprint(Path(sys.argv[1])), indent=2, sort_keys=True))
