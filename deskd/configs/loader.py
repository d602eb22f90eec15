"""Load a desk config from YAML into a validated :class:`DeskConfig`."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from deskd.configs.models import DeskConfig


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_config(path: str | Path) -> DeskConfig:
    """Read and validate ``path``; data file paths become absolute (relative to the file).

    Raises ConfigError naming the file and each failing key path (``risk.r_base: ...``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        cfg = DeskConfig.model_validate(raw, context={"config_dir": path.parent.resolve()})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{path}: {_loc(err['loc'])}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    files = {s: str((path.parent / f).resolve()) for s, f in cfg.data.files.items()}
    update: dict[str, object] = {"data": cfg.data.model_copy(update={"files": files})}
    if cfg.health.reference_report:
        ref = str((path.parent / cfg.health.reference_report).resolve())
        update["health"] = cfg.health.model_copy(update={"reference_report": ref})
    return cfg.model_copy(update=update)


def dump_config(cfg: DeskConfig) -> str:
    """The resolved config as YAML (defaults filled in), for the run's output folder."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
