"""Strategies written outside deskd load from the config: by import path from the config's
folder, by entry point, several ids per class; a bad reference or param is one error naming
its key path."""

import textwrap
from importlib.metadata import EntryPoint

import pytest

from deskd.configs import models
from deskd.configs.loader import ConfigError, load_config

STRATEGY = textwrap.dedent('''
    from deskd.strategies.api import LONG, Strategy, StrategyParams, bar_count

    class Always(Strategy):
        class Params(StrategyParams):
            window: int = bar_count(5, low=2)

        def __init__(self, ctx, params):
            super().__init__(ctx, params)
            self.atr = ctx.indicators.atr(params.window)

        def warmup_bars(self):
            return self.params.window

        def on_bar(self, bar):
            return self.signal(bar, LONG, self.atr.value, "always", 1.0) if self.atr.value > 0 else None

    class NotAStrategy:
        pass
''')

BASE = "universe: {timeframe: M15, symbols: [EURUSD]}\n"


def config(tmp_path, strategies: str, extra: str = ""):
    (tmp_path / "my_always.py").write_text(STRATEGY)
    p = tmp_path / "desk.yaml"
    p.write_text(BASE + "strategies:\n" + textwrap.indent(textwrap.dedent(strategies).strip(), "  ") + "\n" + extra)
    return p


def error_of(path) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value)


def test_a_strategy_beside_the_config_loads_by_import_path_twice_with_its_own_params(tmp_path):
    cfg = load_config(config(tmp_path, """
        fast: {class: "my_always:Always", params: {window: 3}}
        slow: {class: "my_always:Always"}
    """, "risk: {priority: [slow, fast]}\n"))
    fast, slow = cfg.strategies["fast"], cfg.strategies["slow"]
    assert fast.strategy_class is slow.strategy_class and fast.strategy_class.__name__ == "Always"
    assert (fast.validated_params.window, slow.validated_params.window) == (3, 5)
    assert list(cfg.strategies.enabled()) == ["fast", "slow"] and cfg.risk.priority == ["slow", "fast"]


@pytest.mark.parametrize("strategies, where", [
    ('x: {class: "my_always:Always", params: {window: 1}}', "strategies.x.params.window: Input should be greater than or equal to 2"),
    ('x: {class: "my_always:Always", params: {window: 10001}}', "strategies.x.params.window: Input should be less than or equal to 10000"),
    ('x: {class: "my_always:Always", params: {windwo: 3}}', "strategies.x.params.windwo: unknown key"),
    ('x: {class: "no_such_module:Always"}', "strategies.x.class: class 'no_such_module:Always': cannot import 'no_such_module' (looked in"),
    ('x: {class: "my_always:Nope"}', "strategies.x.class: class 'my_always:Nope': module 'my_always' has no 'Nope'"),
    ('x: {class: "my_always:NotAStrategy"}', "is not a subclass of deskd.strategies.api.Strategy"),
    ('x: {class: "not_an_entry_point"}', "no entry point 'not_an_entry_point' in group 'deskd.strategies'"),
    ("x: {params: {window: 3}}", "strategies.x.class: no class"),
    ('"bad id!": {class: "my_always:Always"}', "strategy ids ['bad id!']"),
])
def test_a_bad_strategy_reference_or_param_is_one_error_with_its_key_path(tmp_path, strategies, where):
    assert where in error_of(config(tmp_path, strategies))


def test_priority_names_only_strategies_of_the_config(tmp_path):
    msg = error_of(config(tmp_path, 'x: {class: "my_always:Always"}', "risk: {priority: [S1_TREND_EMA_ATR_ADX]}\n"))
    assert "risk.priority: ['S1_TREND_EMA_ATR_ADX'] are not strategy ids of this config (x)" in msg


def test_a_packaged_strategy_loads_by_its_entry_point_name(tmp_path, monkeypatch):
    (tmp_path / "pkg_always.py").write_text(STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="always", value="pkg_always:Always", group=models.ENTRY_POINT_GROUP)
    monkeypatch.setattr(models, "entry_points", lambda group: [ep] if group == models.ENTRY_POINT_GROUP else [])
    p = tmp_path / "desk.yaml"
    p.write_text(BASE + "strategies: {a: {class: always, params: {window: 4}}}\n")
    cfg = load_config(p)
    assert cfg.strategies["a"].strategy_class.__name__ == "Always" and cfg.strategies["a"].validated_params.window == 4


def test_without_a_strategies_section_s1_runs_alone_and_listed_means_run(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(BASE)
    assert list(load_config(p).strategies.enabled()) == ["S1_TREND_EMA_ATR_ADX"]
    p.write_text(BASE + "strategies: {S3_BREAKOUT_ATR_REGIME_EMA200: {}}\n")
    s3 = load_config(p).strategies["S3_BREAKOUT_ATR_REGIME_EMA200"]
    assert list(load_config(p).strategies.enabled()) == ["S3_BREAKOUT_ATR_REGIME_EMA200"]
    assert s3.effective_stops.k_tp == 3.0  # the class's default bracket
