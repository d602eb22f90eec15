"""A backtest folder as evidence: run.json (what was run, and its content-derived id),
trades.parquet and equity.parquet (typed copies of the CSVs for viewers and pandas),
manifest.json (the size and SHA-256 of every file), and ``deskd verify``, which checks them.

What is hashed, and what is not:

* ``config_fingerprint`` (run.json) is the SHA-256 of the resolved config (config.yaml's
  document) with each data file's path replaced by the file's SHA-256, and the one other path
  a config holds (the health monitor's reference report, which a backtest never reads) by a
  placeholder (:func:`config_identity`): the same bars at another path, or another checkout,
  give the same fingerprint; another setting or other bars another. Strategy code a config
  names by ``class:`` is named, not hashed.
* ``run_id`` is the first 16 hex digits of the SHA-256 of the deskd version, the config
  fingerprint, the scenarios in order, the window (``--from``/``--to`` and the warm-up; null
  for whole files) and the optional outputs (decisions format, counterfactuals on/off). Both
  are re-derived by :func:`verify_run`. The output folder's path, the host, the time and
  ``--jobs`` are not part of either. ``config.sha256`` is config.yaml's bytes (its paths
  included), checked by verify like any file.
* manifest.json lists every file of a backtest folder at publish time (computed from the
  folder, not from a list of names), except itself and metadata.json, with its size and the
  plain SHA-256 of its bytes (``sha256sum`` agrees), and ``content_sha256``, one hash of that
  listing. The other research commands' folders get one too (:func:`write_manifest`; a tune's
  and a walk-forward's list the files and folders they wrote, not the study they keep) and
  verify checks those against it alone.
* metadata.json holds the wall-clock facts (``created_utc``, ``host``): outside run.json and
  outside the manifest, so that two runs on the same inputs have byte-identical run.json and
  manifest.json (report.html included: it is drawn from the files and the config alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskd import __version__
from deskd.core.events import SIDE_NAME, Trade

if TYPE_CHECKING:
    import pyarrow as pa

    from deskd.configs.models import DeskConfig
    from deskd.research.backtest import ScenarioResult

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
METADATA_FILE = "metadata.json"
TRADES_PARQUET = "trades.parquet"
EQUITY_PARQUET = "equity.parquet"
#: run.json's and manifest.json's ``format``; a reader refuses another
RUN_FORMAT = "deskd.run/2"
#: run.json formats an older deskd wrote: named as such, not as damage
OLD_RUN_FORMATS = ("deskd.run/1",)
MANIFEST_FORMAT = "deskd.manifest/1"
#: the files manifest.json never lists: itself, and the wall-clock metadata
NOT_LISTED = (MANIFEST_FILE, METADATA_FILE)
#: hex digits of the run's SHA-256 kept as its id (64 bits: no two runs a desk keeps collide)
RUN_ID_HEX = 16
_PARQUET_COMPRESSION = "zstd"


class RunFolderError(ValueError):
    """Not a run folder that can be verified: missing, not a folder, no run.json or
    manifest.json, or one of them unreadable or not of its format (exit 2 in the CLI)."""


# ------------------------------------------------------------------------------ Parquet copies


def trade_schema() -> pa.Schema:
    """trades.parquet's columns: trades.csv's (same names, order and rounding) typed, then the
    two fills' reference prices and per-side costs trades.csv leaves out.

    One row per round trip, keyed by (scenario, trade_id). A desk trade has exactly one entry
    fill and one exit fill, so the fills are flat columns of the trade's row (``fill_time``,
    ``entry_ref_price``, ``entry_price``, ``entry_cost_pips`` = ``entry_spread_pips`` +
    ``entry_slippage_pips``, ``entry_spike``; ``exit_time``, ``exit_ref_price``, ``exit_price``,
    ``exit_reason`` SL/TP/TIME/EOD/FLATTEN/..., the exit's cost split) beside the bracket's
    levels ``sl_price`` and ``tp_price``: ``pandas.read_parquet`` gives typed columns with no
    join and no nested objects. Times timestamp[ms, tz=UTC] (whole seconds); prices float64
    (quote currency, 6 decimals); ``units`` and ``hold_bars`` int64; pips and USD float64 (2
    decimals; the cost split and per-side costs 4); ``tp_price``, the cost split and the
    spike flags null where absent (no target; a broker that did not report the split)."""
    import pyarrow as pa

    ts = pa.timestamp("ms", tz="UTC")
    f64, i64, s, b = pa.float64(), pa.int64(), pa.string(), pa.bool_()
    cols: list[tuple[str, pa.DataType, bool]] = [
        ("trade_id", i64, False), ("scenario", s, False), ("symbol", s, False), ("strategy_id", s, False),
        ("side", s, False), ("units", i64, False), ("signal_time", ts, False), ("fill_time", ts, False),
        ("entry_price", f64, False), ("exit_time", ts, False), ("exit_price", f64, False),
        ("exit_reason", s, False), ("sl_price", f64, False), ("tp_price", f64, True),
        ("gross_pips", f64, False), ("cost_pips", f64, False), ("pnl_pips", f64, False),
        ("pnl_usd", f64, False), ("risk_usd", f64, False), ("r_multiple", f64, False),
        ("mae_pips", f64, False), ("mfe_pips", f64, False), ("hold_bars", i64, False), ("regime", s, False),
        ("reason_codes", s, False), ("client_order_id", s, False),
        ("entry_spread_pips", f64, True), ("entry_slippage_pips", f64, True),
        ("exit_spread_pips", f64, True), ("exit_slippage_pips", f64, True),
        ("entry_spike", b, True), ("exit_spike", b, True),
        ("entry_ref_price", f64, False), ("entry_cost_pips", f64, False),
        ("exit_ref_price", f64, False), ("exit_cost_pips", f64, False),
    ]
    return pa.schema([pa.field(n, t, nullable=null) for n, t, null in cols])


def _round(x: float | None, nd: int) -> float | None:
    return None if x is None else round(x, nd)


def trade_values(t: Trade, scenario: str) -> list[Any]:
    """One trades.parquet row of ``t`` (columns of :func:`trade_schema`, times in epoch ms)."""
    return [t.trade_id, scenario, t.symbol, t.strategy_id, SIDE_NAME[t.side], int(t.units),
            t.signal_ts * 1000, t.fill_ts * 1000, round(t.entry_price, 6), t.exit_ts * 1000,
            round(t.exit_price, 6), t.exit_reason, round(t.sl_price, 6), _round(t.tp_price, 6),
            round(t.gross_pips, 2), round(t.cost_pips, 2), round(t.pnl_pips, 2), round(t.pnl_usd, 2),
            round(t.risk_usd, 2), round(t.r_multiple, 4), round(t.mae_pips, 2), round(t.mfe_pips, 2),
            int(t.hold_bars), t.regime, t.why, t.client_order_id,
            _round(t.entry_spread_pips, 4), _round(t.entry_slippage_pips, 4),
            _round(t.exit_spread_pips, 4), _round(t.exit_slippage_pips, 4),
            None if t.entry_spike is None else bool(t.entry_spike),
            None if t.exit_spike is None else bool(t.exit_spike),
            round(t.entry_ref_price, 6), round(t.entry_cost_pips, 4),
            round(t.exit_ref_price, 6), round(t.exit_cost_pips, 4)]


def trades_table(scenarios: Iterable[tuple[str, list[Trade]]]) -> pa.Table:
    """The round trips of each (scenario, trades) in trades.csv's order (scenario after
    scenario, by trade_id) as a table of :func:`trade_schema`."""
    import pyarrow as pa

    schema = trade_schema()
    rows = [trade_values(t, scn) for scn, trades in scenarios for t in sorted(trades, key=lambda t: t.trade_id)]
    cols = list(zip(*rows)) if rows else [() for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c), f.type) for c, f in zip(cols, schema)], schema=schema)


def equity_schema() -> pa.Schema:
    """equity.parquet's columns: equity.csv's, typed. ``time`` timestamp[ms, tz=UTC];
    ``kind`` FILL/DAY/BAR/END; ``equity_usd``, ``balance_usd`` float64 (2 decimals);
    ``open_positions`` int64."""
    import pyarrow as pa

    return pa.schema([pa.field("scenario", pa.string(), nullable=False),
                      pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),
                      pa.field("kind", pa.string(), nullable=False),
                      pa.field("equity_usd", pa.float64(), nullable=False),
                      pa.field("balance_usd", pa.float64(), nullable=False),
                      pa.field("open_positions", pa.int64(), nullable=False)])


def equity_table(scenarios: Iterable[tuple[str, list[tuple]]]) -> pa.Table:
    """Each (scenario, equity rows ``(ts, kind, equity_usd, balance_usd, open_positions)``, ts
    in epoch seconds) as a table of :func:`equity_schema`, in equity.csv's order and rounding."""
    import pyarrow as pa

    rows = [(scn, ts * 1000, kind, round(eq, 2), round(bal, 2), int(n))
            for scn, eq_rows in scenarios for ts, kind, eq, bal, n in eq_rows]
    schema = equity_schema()
    cols = list(zip(*rows)) if rows else [() for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c), f.type) for c, f in zip(cols, schema)], schema=schema)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` as one Zstd-compressed Parquet file (row groups of 100,000 rows);
    the same table gives the same bytes. Raises OSError."""
    import pyarrow.parquet as pq

    pq.write_table(table, str(path), compression=_PARQUET_COMPRESSION, row_group_size=100_000)


# ------------------------------------------------------------------------------ identity


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, hex (as :func:`deskd.research.backtest.file_sha256`, without
    importing the backtest, so ``deskd verify`` starts fast). Raises OSError."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _canonical(obj: Any) -> bytes:
    """``obj`` as the JSON whose SHA-256 is taken: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _sha256(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj)).hexdigest()


#: what the fingerprint holds in place of a path to a file a backtest never reads
NOT_READ = "(a path: not read by a backtest)"


def config_identity(config_doc: Mapping[str, Any], data_sha256: Mapping[str, str]) -> dict:
    """The resolved config as the fingerprint sees it: ``config_doc`` (config.yaml's document,
    as :func:`deskd.configs.loader.dump_config` writes it) with ``data.files`` holding, for each
    symbol of ``data_sha256``, ``"sha256:<hex>"`` of its bar file in place of the file's path,
    and no entry for a file the run did not read; ``health.reference_report``, a path only the
    daemon's health monitor reads, is :data:`NOT_READ`. The same bars at another path, or a
    file of a symbol outside the universe, leave it unchanged; any other setting changes it.
    Raises TypeError (a value JSON cannot hold: a date) and ValueError (NaN, infinity)."""
    doc = json.loads(json.dumps(dict(config_doc), allow_nan=False))  # a deep copy, JSON's types
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    doc["data"] = {**data, "files": {s: f"sha256:{h}" for s, h in sorted(data_sha256.items())}}
    if isinstance(doc.get("health"), dict) and doc["health"].get("reference_report"):
        doc["health"] = {**doc["health"], "reference_report": NOT_READ}
    return doc


def config_fingerprint(config_doc: Mapping[str, Any], data_sha256: Mapping[str, str]) -> str:
    """The config fingerprint (the run's inputs: the resolved config and its data), hex:
    SHA-256 of the canonical JSON (sorted keys, no spaces) of :func:`config_identity`."""
    return _sha256(config_identity(config_doc, data_sha256))


def run_id_of(deskd_version: str, fingerprint: str, scenarios: list[str], window: Mapping[str, Any] | None,
              outputs: Mapping[str, str]) -> str:
    """The run's id: the first :data:`RUN_ID_HEX` hex digits of the SHA-256 of the canonical
    JSON of ``{"deskd_version", "config_fingerprint", "scenarios": [...] (in order), "window":
    {"from", "to", "warmup_bars"} or null, "outputs": {"decisions", "counterfactuals"}}``:
    what was run on what, and which optional files the folder holds."""
    ident = {"deskd_version": deskd_version, "config_fingerprint": fingerprint, "scenarios": list(scenarios),
             "window": None if window is None else dict(window), "outputs": dict(outputs)}
    return _sha256(ident)[:RUN_ID_HEX]


def run_record(inputs: Mapping[str, Any], config_doc: Mapping[str, Any], scenarios: list[str],
               window: Mapping[str, Any] | None, *, desk: str, timeframe: str, decisions: str,
               counterfactuals: bool, deskd_version: str = __version__) -> dict:
    """run.json's content: ``inputs`` as :func:`deskd.research.backtest.inputs_fingerprint`
    returns them (``{"data": {symbol: {"path", "sha256"}}, "config_sha256"}``: config.yaml's
    bytes), ``config_doc`` (config.yaml's document), the scenarios, the window (report.json's
    ``window``; None for whole files), the optional outputs (``decisions`` format,
    counterfactuals ``on``/``off``), and the config fingerprint (:func:`config_fingerprint`)
    and run id (:func:`run_id_of`) derived from them. No wall-clock time."""
    data_sha = {s: d["sha256"] for s, d in sorted(inputs["data"].items())}
    outputs = {"decisions": decisions, "counterfactuals": "on" if counterfactuals else "off"}
    fingerprint = config_fingerprint(config_doc, data_sha)
    return {
        "format": RUN_FORMAT,
        "kind": "backtest",
        "run_id": run_id_of(deskd_version, fingerprint, scenarios, window, outputs),
        "config_fingerprint": fingerprint,
        "deskd_version": deskd_version,
        "desk": desk,
        "timeframe": timeframe,
        "config": {"file": "config.yaml", "sha256": inputs["config_sha256"]},
        "data": {s: {"path": d["path"], "sha256": d["sha256"]} for s, d in sorted(inputs["data"].items())},
        "scenarios": list(scenarios),
        "window": None if window is None else dict(window),
        "outputs": outputs,
        "hashed": "config_fingerprint = sha256(canonical JSON of config.yaml with data.files' paths replaced by "
                  "the files' sha256 and health.reference_report's by a placeholder); run_id = sha256(canonical JSON of deskd_version, config_fingerprint, "
                  "scenarios, window, outputs)[:16]; config.sha256 is config.yaml's bytes; wall-clock time is "
                  "in metadata.json, never hashed",
    }


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------ manifest


def folder_files(folder: Path, skip: Iterable[str] = NOT_LISTED) -> dict[str, dict]:
    """Every file under ``folder`` (subfolders included, symlinks followed to their
    content) but the top-level names in ``skip``: ``{relative posix path: {"size": bytes,
    "sha256": hex}}``, sorted by path. Raises OSError."""
    skip = set(skip)
    out: dict[str, dict] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if rel in skip:
                continue
            out[rel] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
    return dict(sorted(out.items()))


def write_manifest(folder: Path, run_id: str | None = None, names: Iterable[str] | None = None,
                   kind: str = "backtest", state: Iterable[str] = ()) -> dict:
    """Write ``folder``/manifest.json listing every file in the folder now
    (:func:`folder_files`), or only the top-level files and folders ``names`` (a command
    writing into a folder that also holds other state, such as a walk-forward's study), and
    return it:
    ``{"format", "kind", "run_id" (or null), "algorithm": "sha256", "files": {path: {"size",
    "sha256"}}, "content_sha256": SHA-256 of the canonical JSON of "files", "not_listed":
    [...]}``. ``kind`` names the command's output (backtest, walkforward, tune, montecarlo,
    stress, verdict, filters); ``state``: top-level names of working state the folder holds
    and the manifest leaves out on purpose (a study a resumed tune keeps changing), added to
    ``not_listed`` so that verify does not warn about them. Call it last, when every other
    file is written. Raises OSError (FileNotFoundError for a name not in the folder)."""
    if names is None:
        files = folder_files(folder)
    else:
        files = {}
        for name in sorted(set(names) - set(NOT_LISTED)):
            p = folder / name
            if p.is_dir():
                files.update({f"{name}/{rel}": f for rel, f in folder_files(p, skip=()).items()})
            elif p.is_file():
                files[name] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
            else:
                raise FileNotFoundError(f"{p}: not written, cannot be listed in {MANIFEST_FILE}")
        files = dict(sorted(files.items()))
    manifest = {"format": MANIFEST_FORMAT, "kind": kind, "run_id": run_id, "algorithm": "sha256", "files": files,
                "content_sha256": _sha256(files), "not_listed": [*NOT_LISTED, *sorted(set(state) - set(NOT_LISTED))]}
    _write_json(folder / MANIFEST_FILE, manifest)
    return manifest


def write_metadata(folder: Path, now: datetime | None = None) -> None:
    """``folder``/metadata.json: when (UTC, whole seconds) and where (host name) the folder was
    written. Wall-clock facts only: never hashed, not in the manifest. Raises OSError."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    _write_json(folder / METADATA_FILE, {"created_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                         "host": socket.gethostname(),
                                         "note": "wall-clock metadata: not part of run_id or manifest.json"})


def export_run(folder: Path, cfg: DeskConfig, results: list[ScenarioResult], report: Mapping[str, Any],
               decisions: str, counterfactuals: bool) -> dict:
    """The export of a backtest folder, called when every other output is in ``folder`` and
    before it is published (config.yaml among them): trades.parquet and equity.parquet from
    ``results``, run.json (:func:`run_record` of config.yaml's document, inputs from
    :func:`inputs_fingerprint`, window from ``report``),
    metadata.json, and last manifest.json over whatever the folder then holds. Returns
    run.json's content. Raises OSError."""
    from deskd.research.backtest import inputs_fingerprint

    write_parquet(trades_table((r.scenario, r.trades) for r in results), folder / TRADES_PARQUET)
    write_parquet(equity_table((r.scenario, r.equity_rows) for r in results), folder / EQUITY_PARQUET)
    import yaml

    config_doc = yaml.safe_load((folder / "config.yaml").read_text())  # the document verify reads
    record = run_record(inputs_fingerprint(cfg), config_doc, [r.scenario for r in results],
                        report.get("window"), desk=cfg.desk, timeframe=cfg.universe.timeframe, decisions=decisions,
                        counterfactuals=counterfactuals)
    _write_json(folder / RUN_FILE, record)
    write_metadata(folder)
    write_manifest(folder, record["run_id"])
    return record


# ------------------------------------------------------------------------------ verify


@dataclass
class Verification:
    """What :func:`verify_run` found. ``failures``: (file, what differs), each making the
    folder fail; ``warnings``: (file, why) that do not (a data file no longer there, files
    added after publishing); ``checked``: files whose SHA-256 was compared; ``kind``: the
    manifest's (a backtest has run.json and a fingerprint; other commands' folders their files
    only)."""

    run_dir: Path
    run_id: str
    kind: str = "backtest"
    checked: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "kind": self.kind, "run_id": self.run_id, "ok": self.ok,
                "files_checked": self.checked,
                "failures": [{"file": f, "problem": w} for f, w in self.failures],
                "warnings": [{"file": f, "problem": w} for f, w in self.warnings]}


def _read_json(path: Path) -> dict:
    def no_constants(name: str) -> Any:  # NaN / Infinity: not JSON, and not in a file deskd wrote
        raise ValueError(f"{name} is not a JSON number")

    try:
        obj = json.loads(path.read_bytes(), parse_constant=no_constants)
    except FileNotFoundError:
        raise RunFolderError(f"{path.parent}: no {path.name}: not a folder deskd wrote, or written before deskd "
                             f"kept it") from None
    except OSError as e:
        raise RunFolderError(f"{path}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise RunFolderError(f"{path}: damaged, not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path}: damaged: not a JSON object")
    return obj


def _is_hex(x: object, n: int | None = None) -> bool:
    return isinstance(x, str) and (n is None or len(x) == n) and all(c in "0123456789abcdef" for c in x) and x != ""


def _read_run(path: Path) -> dict:
    run = _read_json(path)
    if run.get("format") in OLD_RUN_FORMATS:
        raise RunFolderError(f"{path}: written by an older deskd ({run['format']}, whose run_id and fingerprint "
                             f"are taken otherwise): run the backtest again to verify it")
    if run.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{path}: damaged or not deskd's: format {run.get('format')!r}, expected {RUN_FORMAT}")
    cfg = run.get("config")
    data = run.get("data")
    ok = (_is_hex(run.get("run_id"), RUN_ID_HEX) and _is_hex(run.get("config_fingerprint"), 64)
          and isinstance(run.get("deskd_version"), str) and isinstance(cfg, dict)
          and _is_hex(cfg.get("sha256"), 64) and isinstance(cfg.get("file"), str)
          and isinstance(data, dict)
          and all(isinstance(d, dict) and _is_hex(d.get("sha256"), 64) and isinstance(d.get("path"), str)
                  for d in data.values())
          and isinstance(run.get("scenarios"), list) and all(isinstance(s, str) for s in run["scenarios"])
          and (run.get("window") is None or isinstance(run.get("window"), dict))
          and isinstance(run.get("outputs"), dict) and all(isinstance(v, str) for v in run["outputs"].values()))
    if not ok:
        raise RunFolderError(f"{path}: damaged: run_id, config_fingerprint, deskd_version, config, data, scenarios, "
                             f"window or outputs missing or malformed")
    return run


def _read_manifest(path: Path) -> dict:
    man = _read_json(path)
    files = man.get("files")
    not_listed = man.get("not_listed", [])
    if man.get("format") != MANIFEST_FORMAT or not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and _is_hex(v.get("sha256"), 64)
            and isinstance(v.get("size"), int) for k, v in files.items()) or not (
            isinstance(man.get("kind", ""), str) and (man.get("run_id") is None or isinstance(man["run_id"], str))
            and isinstance(not_listed, list) and all(isinstance(n, str) for n in not_listed)):
        raise RunFolderError(f"{path}: damaged: expected {MANIFEST_FORMAT} with files {{path: {{size, sha256}}}}, "
                             f"a kind, a run_id and not_listed [names]")
    return man


def _inside(folder: Path, rel: str) -> bool:
    """Whether the manifest's ``rel`` names a path inside ``folder`` (not absolute, no ..)."""
    p = Path(rel)
    return not p.is_absolute() and ".." not in p.parts and rel != ""


def verify_run(run_dir: Path) -> Verification:
    """Check a backtest folder against its manifest.json and run.json; a folder with
    manifest.json and no run.json (a walk-forward's, a tune's, a Monte Carlo's, a stress's, a
    verdict's) against its manifest only.

    Fails (``failures``, each naming the file) when a listed file is missing or its size or
    SHA-256 differs; run.json is not listed; config.yaml's SHA-256 is not run.json's config
    fingerprint; a data file the config names (its path in config.yaml, else run.json's) is
    there but its SHA-256 is not the recorded one; run.json's ``config_fingerprint`` or ``run_id``
    is not the one its recorded inputs give (:func:`run_id_of`), or manifest.json names another
    run_id or a ``content_sha256`` that is not its listing's. Warns (``warnings``) for a data
    file no longer there and for files (or folders, e.g. a later ``deskd montecarlo``'s) present
    but not listed. Raises RunFolderError when ``run_dir`` is not a folder, or run.json or
    manifest.json is missing, unreadable or damaged (a folder with neither is not a result
    folder; run.json of an older format is named as such)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: {'not a folder' if run_dir.exists() else 'no such folder'}")
    if not (run_dir / RUN_FILE).exists() and not (run_dir / MANIFEST_FILE).exists():
        raise RunFolderError(f"{run_dir}: not a result folder (no {MANIFEST_FILE} or {RUN_FILE}): give a folder "
                             f"deskd backtest, walkforward, tune, montecarlo, stress or verdict wrote (folders "
                             f"written before deskd kept manifests have none)")
    if not (run_dir / RUN_FILE).exists():  # files only
        man = _read_manifest(run_dir / MANIFEST_FILE)
        v = Verification(run_dir, str(man.get("run_id") or "-"), kind=man.get("kind") or "backtest")
        _check_manifest(v, man, None)
        if v.kind == "backtest":  # its fingerprint is run.json's: without it nothing says what was run
            v.failures.append((RUN_FILE, "missing: a backtest folder's run and fingerprint cannot be checked"))
        return v
    run = _read_run(run_dir / RUN_FILE)
    man = _read_manifest(run_dir / MANIFEST_FILE)
    v = Verification(run_dir, run["run_id"])
    _check_manifest(v, man, run)
    _check_fingerprint(v, run)
    return v


def _check_manifest(v: Verification, man: dict, run: dict | None) -> None:
    """Every file ``man`` lists, byte for byte; its own hash; run.json listed and its run_id
    the manifest's (``run`` None: a folder without run.json); unlisted files."""
    run_dir = v.run_dir
    listed: dict[str, dict] = man["files"]
    for rel, want in listed.items():
        if not _inside(run_dir, rel):
            v.failures.append((MANIFEST_FILE, f"lists {rel!r}, a path outside the folder"))
            continue
        p = run_dir / rel
        if not p.is_file():
            v.failures.append((rel, "listed in manifest.json but missing"))
            continue
        v.checked += 1
        try:
            got = file_sha256(p)
            size = p.stat().st_size
        except OSError as e:
            v.failures.append((rel, f"cannot be read: {e.strerror or e}"))
            continue
        if got != want["sha256"]:
            v.failures.append((rel, f"SHA-256 {got[:16]}... differs from the manifest's {want['sha256'][:16]}... "
                                    f"(size {size:,} bytes, manifest {want['size']:,})"))
        elif size != want["size"]:
            v.failures.append((rel, f"size {size:,} bytes differs from the manifest's {want['size']:,}"))
    if man.get("content_sha256") != _sha256(listed):
        v.failures.append((MANIFEST_FILE, "content_sha256 is not the SHA-256 of its files listing (edited)"))
    if run is not None and RUN_FILE not in listed:
        v.failures.append((RUN_FILE, "not listed in manifest.json"))
    if run is not None and man.get("run_id") != run["run_id"]:
        v.failures.append((MANIFEST_FILE, f"names run_id {man.get('run_id')}, run.json {run['run_id']}"))
    unlisted: dict[str, int] = {}
    left_out = {*NOT_LISTED, *man.get("not_listed", [])}
    for rel in folder_files_names(run_dir):
        if rel not in listed and rel.split("/", 1)[0] not in left_out:
            top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
            unlisted[top] = unlisted.get(top, 0) + 1
    for top, n in unlisted.items():
        held = f" (a folder of {n} file{'s' if n != 1 else ''})" if top.endswith("/") else ""
        v.warnings.append((top, f"present but not listed in manifest.json{held}"))


def _check_fingerprint(v: Verification, run: dict) -> None:
    """config.yaml and the data files against run.json's record; run.json's derived ids."""
    import yaml

    run_dir = v.run_dir
    cfg_rel = run["config"]["file"]
    cfg_path = run_dir / cfg_rel
    data_paths: dict[str, str] = {s: d["path"] for s, d in run["data"].items()}
    config_doc: dict | None = None
    if not _inside(run_dir, cfg_rel) or not cfg_path.is_file():
        v.failures.append((cfg_rel, "missing: the resolved config the run's fingerprint is taken of"))
    else:
        try:
            got = file_sha256(cfg_path)
        except OSError as e:
            raise RunFolderError(f"{cfg_path}: cannot read: {e.strerror or e}") from None
        if got != run["config"]["sha256"]:
            v.failures.append((cfg_rel, f"SHA-256 {got[:16]}... is not the recorded "
                                        f"{run['config']['sha256'][:16]}... (edited after the run)"))
        try:
            doc = yaml.safe_load(cfg_path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            doc = None
        if not isinstance(doc, dict):
            v.failures.append((cfg_rel, "not a YAML mapping: the config fingerprint cannot be re-derived"))
        else:
            config_doc = doc
            named = (doc.get("data") or {}).get("files", {}) if isinstance(doc.get("data"), dict) else {}
            if isinstance(named, dict):
                data_paths.update({s: str(p) for s, p in named.items() if s in data_paths and isinstance(p, str)})
    for sym, rec in sorted(run["data"].items()):
        path = Path(data_paths[sym])
        if not path.is_absolute():
            path = run_dir / path
        if not path.is_file():
            v.warnings.append((str(path), f"{sym}'s data file is no longer there: its SHA-256 cannot be checked"))
            continue
        try:
            got = file_sha256(path)
        except OSError as e:
            v.warnings.append((str(path), f"{sym}'s data file cannot be read: {e.strerror or e}"))
            continue
        if got != rec["sha256"]:
            v.failures.append((str(path), f"{sym}'s data file changed: SHA-256 {got[:16]}... is not the "
                                          f"recorded {rec['sha256'][:16]}..."))
    data_sha = {s: d["sha256"] for s, d in run["data"].items()}
    try:
        fp = None if config_doc is None else config_fingerprint(config_doc, data_sha)
    except (TypeError, ValueError) as e:
        v.failures.append((cfg_rel, f"holds a value no config holds ({e}): the fingerprint cannot be re-derived"))
        fp = None
    if fp is not None and fp != run["config_fingerprint"]:
        v.failures.append((RUN_FILE, f"config_fingerprint {run['config_fingerprint'][:16]}... is not the one "
                                     f"{cfg_rel} and the recorded data give ({fp[:16]}...)"))
    rid = run_id_of(run["deskd_version"], run["config_fingerprint"], run["scenarios"], run["window"], run["outputs"])
    if rid != run["run_id"]:
        v.failures.append((RUN_FILE, f"run_id {run['run_id']} is not the one its recorded inputs give ({rid})"))


def folder_files_names(folder: Path) -> list[str]:
    """Relative posix paths of every file under ``folder``, sorted (no hashing)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out += [(Path(root) / f).relative_to(folder).as_posix() for f in files]
    return sorted(out)
