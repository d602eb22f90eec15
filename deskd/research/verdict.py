"""``deskd verdict``: a strategy's research evidence against the desk's gates, PASS or FAIL.

Input: walk-forward folders (``deskd walkforward``), one per strategy, each holding what the
desk ran on it: ``splits/NN/tune.json`` (the Deflated Sharpe Ratio and PBO of each split's
tune), ``montecarlo-*/montecarlo.json`` (``deskd montecarlo``) and ``stress-*/stress.json``
(``deskd stress``). The gates are the ``verdict:`` section of the config
(:class:`deskd.configs.models.VerdictConfig`): the run's own config.yaml, or ``--config``.

Each gate has its value, its threshold and PASS or FAIL. Evidence that is missing (no Monte
Carlo run, a split whose tune had too few days for a DSR) FAILS its gate with the reason and
the command that produces it: a desk does not put capital on a test nobody ran. Where a run
has several Monte Carlo or stress folders (several base scenarios), the worst of them counts.
Per-split statistics (DSR, PBO) are summarised by their median over the splits that have one.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from deskd.configs.loader import load_config
from deskd.configs.models import VerdictConfig
from deskd.research.backtest import file_sha256


class VerdictInputError(ValueError):
    """A folder that is not a walk-forward run, or an evidence file that cannot be read."""


@dataclass(frozen=True)
class Gate:
    """One gate of one run: ``value`` compared with ``threshold`` by ``op`` (``>``, ``>=``,
    ``<``); ``passed`` False also when the value is missing (``note`` says why)."""

    key: str
    label: str
    value: float | None
    op: str
    threshold: float
    passed: bool
    source: str
    note: str = ""


_OPS = {">": lambda v, t: v > t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t}


def gate(key: str, label: str, value: float | None, op: str, threshold: float, source: str, missing: str = "") -> Gate:
    """A :class:`Gate` judged: PASS only for a finite ``value`` on the right side of
    ``threshold``; a missing or non-finite value FAILS with ``missing`` as its note."""
    ok = value is not None and math.isfinite(value) and _OPS[op](value, threshold)
    note = "" if value is not None and math.isfinite(value) else (missing or "no value")
    return Gate(key, label, value if value is None or math.isfinite(value) else None, op, threshold, ok, source, note)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VerdictInputError(f"{path}: cannot read it: {e}") from None
    if not isinstance(d, dict):
        raise VerdictInputError(f"{path}: not a JSON object")
    return d


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def _median(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


@dataclass
class RunVerdict:
    """The gates of one walk-forward folder."""

    run_dir: str
    strategy_id: str
    gates: list[Gate]

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return all(g.passed for g in self.gates)

    def gate(self, key: str) -> Gate:
        """The gate named ``key``. Raises StopIteration for a name that is not one."""
        return next(g for g in self.gates if g.key == key)

    def as_dict(self) -> dict[str, Any]:
        """verdict.json's entry of this run: its folder, strategy, result and gates."""
        return {"run_dir": self.run_dir, "strategy_id": self.strategy_id, "passed": self.passed,
                "gates": [asdict(g) for g in self.gates]}


def _obj(x: Any) -> dict[str, Any]:
    """``x`` when it is a JSON object, else an empty one: a damaged file reads as missing evidence."""
    return x if isinstance(x, dict) else {}


def _evidence(run_dir: Path, name: str, inputs: tuple[str, ...]) -> tuple[dict[str, Any] | None, str]:
    """(the JSON of ``run_dir/name``, why it does not count): None with "missing" when there is
    none, None with "stale ..." when the run's ``inputs`` (file names) changed since it was made
    (their SHA-256 differ from the ones it recorded)."""
    path = run_dir / name
    if not path.is_file():
        return None, "missing"
    doc = _read_json(path)
    recorded = _obj(_obj(doc.get("inputs")).get("files_sha256"))
    changed = [f for f in inputs if (run_dir / f).is_file() and recorded.get(f) != file_sha256(str(run_dir / f))]
    if changed:
        return None, f"stale: {name} was made from another {', '.join(changed)}"
    return doc, ""


def judge(run_dir: Path, gates_cfg: VerdictConfig | None = None) -> RunVerdict:
    """Every gate of ``run_dir`` (a walk-forward folder) against ``gates_cfg`` (default: the
    run's config.yaml ``verdict:``). The Monte Carlo and stress evidence is the one made under
    ``evidence_scenario`` (``montecarlo-<sc>/``, ``stress-<sc>/``), from the walk-forward as it
    is now (a file made from an earlier run of the folder is stale and fails its gates). Raises
    VerdictInputError (not a walk-forward folder, an unreadable evidence file, a gate's scenario
    the run does not have), ConfigError (a bad config.yaml)."""
    run_dir = Path(run_dir)
    if not (run_dir / "walkforward.json").is_file():
        raise VerdictInputError(f"{run_dir}: not a walk-forward folder (no walkforward.json); the verdict needs "
                                f"out-of-sample evidence: run deskd walkforward first")
    wf = _read_json(run_dir / "walkforward.json")
    if gates_cfg is None:
        gates_cfg = load_config(run_dir / "config.yaml").verdict
    g = gates_cfg
    sid = str(wf.get("strategy_id", "?"))
    raw = wf.get("scenarios")
    scenarios = [str(x) for x in raw] if isinstance(raw, list) else []
    for flag, want in (("verdict.oos_scenario", g.oos_scenario), ("verdict.evidence_scenario", g.evidence_scenario)):
        if want and want not in scenarios:
            raise VerdictInputError(f"{flag} {want!r}: {run_dir} ran scenarios {', '.join(scenarios) or 'none'}")
    gates: list[Gate] = []

    sc = g.oos_scenario or (scenarios[-1] if scenarios else "")
    oos = _obj(_obj(wf.get("out_of_sample")).get(sc))
    gates.append(gate("oos_expectancy_r", f"OOS expectancy, scenario {sc} (R per trade)",
                      _num(oos.get("expectancy_r")), ">", g.oos_expectancy_r_min, "walkforward.json",
                      f"no out-of-sample trades under scenario {sc!r} (the run has {', '.join(scenarios) or 'none'})"))

    dsr, pbo = [], []
    rows = wf.get("splits")
    for row in rows if isinstance(rows, list) else []:
        n = _obj(row).get("split")
        tj = run_dir / "splits" / f"{n:02d}" / "tune.json" if isinstance(n, int) else None
        of = _obj(_read_json(tj).get("overfitting")) if tj is not None and tj.is_file() else {}
        dsr.append(_num(_obj(of.get("dsr")).get("value")))
        pbo.append(_num(_obj(of.get("pbo")).get("value")))
    for key, label, values, op, threshold in (("dsr", "Deflated Sharpe Ratio", dsr, ">", g.dsr_min),
                                              ("pbo", "PBO (CSCV)", pbo, "<", g.pbo_max)):
        have = sum(v is not None for v in values)
        gates.append(gate(key, f"{label}, median of {have} of {len(values)} splits", _median(values), op, threshold,
                          "splits/NN/tune.json", f"no split's tune has a {key.upper()} (too few trials or days)"))

    ev = g.evidence_scenario or (scenarios[0] if scenarios else "A")
    run_files = ("oos_trades.csv", "oos_equity.csv", "config.yaml")
    mc, why = _evidence(run_dir, f"montecarlo-{ev}/montecarlo.json", run_files)
    wk = _obj(_obj(_obj(_obj(mc).get("results")).get("daily")).get("p_week_dd_above_week_limit"))
    gates.append(gate("p_week_breach", f"P(a week falls to the week limit), Monte Carlo {ev}",
                      _num(wk.get("probability")), "<", g.p_week_breach_max, f"montecarlo-{ev}/montecarlo.json",
                      f"{why}: run deskd montecarlo {run_dir} --scenario {ev}" if mc is None else
                      "the Monte Carlo has no daily bootstrap (fewer than 2 daily returns)"))

    st, why = _evidence(run_dir, f"stress-{ev}/stress.json", ("walkforward.json", "config.yaml"))
    cost, params = _obj(_obj(st).get("cost")), _obj(_obj(st).get("params"))
    redo = f"{why}: run deskd stress {run_dir} --scenario {ev}"
    be_gate = gate("break_even_cost_multiple", f"Break-even cost multiple of {ev} (stress)",
                   _num(cost.get("break_even_cost_multiple")), ">=", g.break_even_cost_multiple_min,
                   f"stress-{ev}/stress.json", redo if st is None else "stress.json has no break-even multiple")
    censored = cost.get("break_even_censored")
    if be_gate.value is not None and censored:  # the grid's end, not a crossing: say which way
        be_gate = replace(be_gate, note={"at_or_below": "expectancy is not positive at the lowest multiple run",
                                         "at_or_above": "expectancy stays positive up to the highest multiple run"
                                         }.get(str(censored), str(censored)))
    gates.append(be_gate)
    gates.append(gate("profitable_neighbours", f"Share of param neighbours profitable, {ev} (stress)",
                      _num(params.get("profitable_share")), ">=", g.profitable_neighbours_min_frac,
                      f"stress-{ev}/stress.json",
                      redo if st is None else "no param perturbation: run deskd stress with --neighbours > 0"))
    return RunVerdict(str(run_dir), sid, gates)


def _fmt(key: str, x: float | None) -> str:
    if x is None:
        return "missing"
    if key in ("p_week_breach", "profitable_neighbours"):
        return f"{x:.1%}"
    if key == "oos_expectancy_r":
        return f"{x:+.4f}"
    return f"{x:.3f}"


def table(verdicts: list[RunVerdict]) -> str:
    """The terminal table, one row per gate and a column per run (value and PASS/FAIL), then
    per run its result, folder and the notes of its gates; 80 columns for up to two runs."""
    w = 20
    head = f"{'gate':<24} {'threshold':>10}" + "".join(f" {v.strategy_id[:w]:>{w}}" for v in verdicts)
    lines = [head, "-" * len(head)]
    for i, g0 in enumerate(verdicts[0].gates):
        cells = "".join(f" {(_fmt(g.key, g.value) + (' PASS' if g.passed else ' FAIL')):>{w}}"
                        for g in (v.gates[i] for v in verdicts))
        lines.append(f"{g0.key[:24]:<24} {g0.op + format(g0.threshold, 'g'):>10}{cells}")
    lines.append("")
    for v in verdicts:
        lines.append(f"{v.strategy_id}: {'PASS' if v.passed else 'FAIL'} ({sum(g.passed for g in v.gates)} of "
                     f"{len(v.gates)} gates pass)")
        lines.append(f"  run: {v.run_dir}")
        lines += [f"  {g.key}: {g.note}" for g in v.gates if g.note]
    return "\n".join(lines)


def write_outputs(verdicts: list[RunVerdict], out: Path) -> Path:
    """verdict.json (every run's gates) and report.html into ``out``, whole or not at all (an
    earlier verdict there is replaced; any other non-empty folder raises VerdictInputError)."""
    from deskd import __version__
    from deskd.research.outputs import write_folder
    from deskd.research.verdict_html import render_html

    out = Path(out)
    doc = {"deskd_version": __version__, "passed": all(v.passed for v in verdicts),
           "runs": [v.as_dict() for v in verdicts]}
    try:
        return write_folder(out, {
            "report.html": lambda p: p.write_text(render_html(verdicts, out), encoding="utf-8"),
            "verdict.json": lambda p: p.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8"),
        }, marker="verdict.json")
    except FileExistsError as e:
        raise VerdictInputError(str(e)) from None
