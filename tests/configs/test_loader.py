"""Each kind of bad config gets an error naming the file and the key path."""

from pathlib import Path

import pytest

from deskd.configs.loader import ConfigError, dump_config, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deskd" / "configs" / "examples" / "desk.yaml"
BASE = """
universe: {timeframe: M15, symbols: [EURUSD, USDJPY]}
"""


def write(tmp_path, text):
    p = tmp_path / "desk.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return str(e.value)


def test_example_config_loads_and_resolves_data_paths():
    cfg = load_config(EXAMPLE)
    assert cfg.universe.symbols == ["EURUSD", "GBPUSD", "USDJPY"]
    assert all(Path(p).is_file() for p in cfg.data.files.values())
    assert list(cfg.strategies.enabled()) == ["S1_TREND_EMA_ATR_ADX"]


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    msg = error_of(tmp_path, BASE + "risk: {r_bse: 0.01}\n")
    assert "desk.yaml: risk.r_bse: unknown key" in msg


def test_unknown_strategy_param_is_rejected_with_its_path(tmp_path):
    msg = error_of(tmp_path, BASE + "strategies: {S1_TREND_EMA_ATR_ADX: {params: {ema_fats: 3}}}\n")
    assert "strategies.S1_TREND_EMA_ATR_ADX.params.ema_fats: unknown key" in msg


def test_out_of_range_value_names_the_key(tmp_path):
    msg = error_of(tmp_path, BASE + "risk: {r_base: -1}\n")
    assert "risk.r_base" in msg and "greater than 0" in msg


def test_wrong_type_names_the_key(tmp_path):
    msg = error_of(tmp_path, BASE + "account: {starting_equity_usd: lots}\n")
    assert "account.starting_equity_usd" in msg


@pytest.mark.parametrize("bad,where", [
    ("bar_contract: {fill_on: close}\n", "bar_contract.fill_on"),
    ("bar_contract: {signal_on: open}\n", "bar_contract.signal_on"),
    ("bar_contract: {allow_bar0: true}\n", "bar_contract.allow_bar0"),
])
def test_other_bar_contracts_are_rejected(tmp_path, bad, where):
    assert where in error_of(tmp_path, BASE + bad)


def test_bad_symbol_and_timezone_and_priority(tmp_path):
    assert "universe.symbols" in error_of(tmp_path, "universe: {symbols: [EUR/USD]}\n")
    assert "data.timezone" in error_of(tmp_path, BASE + "data: {timezone: Mars/Olympus}\n")
    assert "risk.priority" in error_of(tmp_path, BASE + "risk: {priority: [S9]}\n")


def test_symbol_outside_the_universe_is_rejected(tmp_path):
    msg = error_of(tmp_path, BASE + "costs: {spread_pips: {GBPUSD: 1.0}}\n")
    assert "GBPUSD is not in universe.symbols" in msg


def test_ema_fast_must_be_shorter_than_slow(tmp_path):
    msg = error_of(tmp_path, BASE + "strategies: {S1_TREND_EMA_ATR_ADX: {params: {ema_fast: 60}}}\n")
    assert "ema_fast must be shorter than ema_slow" in msg


def test_missing_required_section_and_empty_and_broken_yaml(tmp_path):
    assert "universe: Field required" in error_of(tmp_path, "desk: x\n")
    assert "mapping" in error_of(tmp_path, "")
    assert "not valid YAML" in error_of(tmp_path, "universe: [\n")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(EXAMPLE)
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(p)
    assert dump_config(again) == dump_config(cfg)  # the resolved config is a fixed point
    assert again.strategies.enabled()["S1_TREND_EMA_ATR_ADX"].validated_params == \
        cfg.strategies.enabled()["S1_TREND_EMA_ATR_ADX"].validated_params


@pytest.mark.parametrize("text,where", [
    ('desk: "my desk, london"\n', "desk: String should match pattern"),
    ('costs: {scenarios: {"A,1": {}}}\n', "costs.scenarios: scenario names ['A,1']"),
    ("costs: {scenarios: {}}\n", "costs.scenarios: at least one scenario"),
])
def test_names_that_reach_order_ids_and_csv_are_restricted(tmp_path, text, where):
    assert where in error_of(tmp_path, BASE + text)


def test_a_config_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    p = tmp_path / "desk.yaml"
    p.write_bytes(b"universe: {timeframe: M15, symbols: [EURUSD]}\ndesk: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"desk.yaml: line 2: not UTF-8 text \(byte 0xe9 at offset 55\)"):
        load_config(p)


@pytest.mark.parametrize("depth", [40, 5000])
def test_yaml_nested_thousands_deep_is_refused_in_one_line(tmp_path, depth):
    msg = error_of(tmp_path, BASE + "desk: " + "[" * depth + "]" * depth + "\n")
    assert "not a desk config: nested" in msg and "\n" not in msg


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    msg = error_of(tmp_path, BASE + "risk: {r_base: 0.01\n")
    assert "\n" not in msg and "desk.yaml: line 4, column 1: not valid YAML" in msg


def test_keys_and_values_echoed_in_errors_are_quoted_and_bounded(tmp_path):
    msg = error_of(tmp_path, BASE + 'risk:\n  ? "r_\\e[2J' + "x" * 100_000 + '"\n  : 1\n')
    assert "\x1b" not in msg and len(msg) < 400
    assert "risk.'r_\\x1b[2Jxxx" in msg and "(100,006 characters): unknown key" in msg
    msg = error_of(tmp_path, BASE + 'data: {timezone: "Mars/\\e' + "y" * 100_000 + '"}\n')
    assert "data.timezone" in msg and "\x1b" not in msg and len(msg) < 400


def test_a_data_path_that_is_a_symlink_loop_loads_unresolved_for_the_bar_reader(tmp_path):
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    cfg = load_config(write(tmp_path, BASE + "data: {files: {EURUSD: a.csv}}\n"))
    assert cfg.data.files["EURUSD"] == str(tmp_path / "a.csv")


@pytest.mark.parametrize("text, where", [
    ("account: {starting_equity_usd: .inf}\n", "account.starting_equity_usd: Input should be a finite number"),
    ("risk: {r_base: .nan}\n", "risk.r_base: Input should be a finite number"),
    ("data: {timezone: EST}\n", "data.timezone: 'EST' is a fixed offset all year (no daylight saving); "
                                "data that follows local time is 'America/New_York'"),
    ("strategies: {S1_TREND_EMA_ATR_ADX: {params: {ema_slow: 100000000}}}\n",
     "strategies.S1_TREND_EMA_ATR_ADX.params.ema_slow: Input should be less than or equal to 10000"),
    ("strategies: {S1_TREND_EMA_ATR_ADX: {params: {ema_slow: 9223372036854775808}}}\n",
     "strategies.S1_TREND_EMA_ATR_ADX.params.ema_slow: Input should be less than or equal to 10000"),
])
def test_values_that_would_overflow_or_mislead_later_are_refused_by_name(tmp_path, text, where):
    assert where in error_of(tmp_path, BASE + text)


def test_a_file_may_carry_its_own_timezone(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "data:\n  timezone: Europe/Athens\n  files:\n"
                            "    EURUSD: {path: e.csv, timezone: America/New_York}\n"))
    assert cfg.data.timezone_of("EURUSD") == "America/New_York" and cfg.data.files["EURUSD"].endswith("e.csv")
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again).data.timezone_of("EURUSD") == "America/New_York"
    msg = error_of(tmp_path, BASE + "data: {files: {EURUSD: {path: e.csv, tz: UTC}}}\n")
    assert "files.EURUSD: a path, or {path: ..., timezone: ...} (unknown keys ['tz'])" in msg
    msg = error_of(tmp_path, BASE + "data: {files: {EURUSD: {path: e.csv, timezone: Mars/Base}}}\n")
    assert "data.timezones: unknown IANA timezone 'Mars/Base'" in msg
