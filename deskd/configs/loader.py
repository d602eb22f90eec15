"""Load a desk config from YAML into a validated :class:`DeskConfig`.

Every problem is a :class:`ConfigError` whose lines each name the file and the key path or
the YAML line: a file that is not UTF-8, invalid YAML, nesting deeper than MAX_DEPTH, unknown
keys, bad values. Keys and values from the file are echoed quoted and bounded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from deskd.configs.models import DeskConfig
from deskd.core.text import printable, shown

#: deepest nesting of mappings and lists accepted (a desk config needs 5)
MAX_DEPTH = 32
#: characters of a validation message kept (messages may quote a bad value)
MESSAGE_LIMIT = 240
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


def _loc(loc: tuple) -> str:
    """A key path as ``risk.r_base``; a part that is not a plain name is quoted."""
    parts = [str(p) if isinstance(p, int) or _NAME.fullmatch(str(p)) else shown(p) for p in loc]
    return ".".join(parts) or "(top level)"


def absolute(path: str | Path, base: str | Path = ".") -> str:
    """``path`` (relative to ``base``) as an absolute path, symlinks resolved when they can be:
    a symlink loop stays unresolved, for the bar reader to name."""
    p = Path(base) / path
    try:
        return str(p.resolve())
    except (RuntimeError, OSError):  # a symlink loop: RuntimeError on Python 3.11, OSError later
        return os.path.abspath(p)


def _depth(raw: object) -> int:
    """How deeply ``raw`` nests mappings and lists (iteratively: any depth is safe)."""
    deepest, todo = 0, [(raw, 1)]
    while todo:
        node, d = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                todo.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """One line for a YAML error: where, and what."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{path}: {where}not valid YAML: {printable(str(what), MESSAGE_LIMIT)}"


def load_config(path: str | Path) -> DeskConfig:
    """Read and validate ``path``; data file paths become absolute (relative to the file).

    Raises ConfigError naming the file and each failing key path (``risk.r_base: ...``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                          f"offset {e.start}): save the config as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    except RecursionError:
        raise ConfigError(f"{path}: not a desk config: nested too deeply for YAML "
                          f"(at most {MAX_DEPTH} levels)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    if _depth(raw) > MAX_DEPTH:
        raise ConfigError(f"{path}: not a desk config: nested more than {MAX_DEPTH} levels deep")
    try:
        cfg = DeskConfig.model_validate(raw, context={"config_dir": path.parent.resolve()})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{path}: {_loc(err['loc'])}: {printable(msg, MESSAGE_LIMIT)}")
        raise ConfigError("\n".join(lines)) from None
    files = {s: absolute(f, path.parent) for s, f in cfg.data.files.items()}
    update: dict[str, object] = {"data": cfg.data.model_copy(update={"files": files})}
    if cfg.health.reference_report:
        ref = absolute(cfg.health.reference_report, path.parent)
        update["health"] = cfg.health.model_copy(update={"reference_report": ref})
    return cfg.model_copy(update=update)


def dump_config(cfg: DeskConfig) -> str:
    """The resolved config as YAML (defaults filled in), for the run's output folder."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
