"""A strategy's search space: which params (and bracket settings) a tune varies, over what.

The strategy's ``Params.space`` declares the ranges (:class:`deskd.configs.models.Dimension`);
the config's ``tune.space.<id>`` replaces or adds ranges, by param name or ``stops.<field>``
for the bracket (``stops.k_sl``). Every other param keeps the config's value. A point is a
dict of the varied names to values; the strategy's own Params model (and StopsConfig) validate
it, so a point that breaks a constraint (``ema_fast >= ema_slow``) is :class:`InvalidPoint`,
skipped and counted, never run.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deskd.configs.models import DeskConfig, Dimension, StopsConfig


class InvalidPoint(ValueError):
    """A point the strategy's Params model (or StopsConfig) refuses; the message says why."""


@dataclass(frozen=True)
class SearchSpace:
    """The ranges of ``strategy_id`` in ``cfg`` (names in a fixed, sorted order)."""

    cfg: DeskConfig
    strategy_id: str
    dims: dict[str, Dimension]

    @classmethod
    def of(cls, cfg: DeskConfig, strategy_id: str) -> SearchSpace:
        """The class's declared ranges updated by ``cfg.tune.space[strategy_id]``. Raises
        KeyError for an id not in the config, ValueError when nothing is left to tune."""
        if strategy_id not in cfg.strategies.root:
            raise KeyError(f"{strategy_id!r} is not a strategy of this config "
                           f"({', '.join(cfg.strategies.root)})")
        spec = cfg.strategies[strategy_id]
        dims = {**spec.strategy_class.Params.space, **cfg.tune.space.get(strategy_id, {})}
        if not dims:
            raise ValueError(f"{strategy_id}: its class declares no tunable params and tune.space."
                             f"{strategy_id} names none: nothing to tune")
        return cls(cfg, strategy_id, dict(sorted(dims.items())))

    @property
    def size(self) -> int:
        """Points in the full grid (valid or not). Raises ValueError for a float range without
        a step."""
        return math.prod(len(d.values()) for d in self.dims.values())

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of the grid, the last name varying fastest."""
        names = list(self.dims)
        for values in itertools.product(*(self.dims[n].values() for n in names)):
            yield dict(zip(names, values))

    def resolve(self, point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(params, stops) of the strategy at ``point``: the config's values with the point's
        on top, both validated. Raises InvalidPoint naming the broken rule."""
        spec = self.cfg.strategies[self.strategy_id]
        params = spec.validated_params.model_dump()
        stops = spec.effective_stops.model_dump()
        for name, value in point.items():
            group, _, field = name.rpartition(".")
            (stops if group == "stops" else params)[field] = value
        try:
            spec.strategy_class.Params.model_validate(params)
            StopsConfig.model_validate(stops)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise InvalidPoint(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}") from None
        return params, stops

    def config_for(self, point: dict[str, Any], config_dir: Path | None) -> DeskConfig:
        """The desk config that runs only this strategy at ``point`` (its own symbols, the
        rest of the config as it is). Raises InvalidPoint."""
        params, stops = self.resolve(point)
        d = self.cfg.model_dump(mode="json", by_alias=True)
        spec = d["strategies"][self.strategy_id]
        spec.update(params=params, stops=stops, enabled=True)
        d["strategies"] = {self.strategy_id: spec}
        d["risk"]["priority"] = []
        d["tune"]["space"] = {}
        try:
            return DeskConfig.model_validate(d, context={"config_dir": config_dir})
        except ValidationError as e:  # a cross-field rule outside the params model
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise InvalidPoint(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the dimensions (ints stepped, floats stepped or continuous,
        choices categorical): how a grid point is recorded in a study."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, Any] = {}
        for name, d in self.dims.items():
            if d.choices is not None:
                out[name] = CategoricalDistribution(d.choices)
            elif d.is_int:
                out[name] = IntDistribution(int(d.low or 0), int(d.high or 0), step=int(d.step or 1))
            else:
                values = d.values() if d.step is not None else None
                high = values[-1] if values else float(d.high or 0.0)
                out[name] = FloatDistribution(float(d.low or 0.0), high, step=d.step)
        return out

    def suggest(self, trial: Any) -> dict[str, Any]:
        """A point drawn by an Optuna trial (its sampler decides: TPE, random, ...)."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        point: dict[str, Any] = {}
        for name, dist in self.distributions().items():
            if isinstance(dist, CategoricalDistribution):
                point[name] = trial.suggest_categorical(name, list(dist.choices))
            elif isinstance(dist, IntDistribution):
                point[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step)
            else:
                point[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        return point

    def describe(self) -> dict[str, Any]:
        """The space as JSON-ready data: per name its values (ranges as low/high/step)."""
        return {n: d.model_dump(exclude_none=True) for n, d in self.dims.items()}
