"""Strategy health: the window against its reference profile, status by the documented z rule."""

import json
import math

import pytest

from deskd.configs.models import HealthConfig
from deskd.core.bus import Bus
from deskd.core.events import PositionClosed, Trade
from deskd.daemon.strategy_health import HealthMonitor, Profile, profiles_from_report

S1 = "S1_TREND_EMA_ATR_ADX"
CFG = HealthConfig(window_trades=20, min_trades=10)
REF = {S1: Profile(500, 0.4, 0.1, 1.0, "test")}


def closed(bus, rs):
    for i, r in enumerate(rs):
        t = Trade(i + 1, "EURUSD", S1, 1, 1000, 0, 0, 1.1, 1.1, 1.09, None, 100.0, 0.0, "", "", f"c{i}")
        t.r_multiple, t.pnl_usd = r, r * 100.0
        bus.publish(PositionClosed(0, t))


def monitor(rs, reference=REF, cfg=CFG):
    bus = Bus()
    m = HealthMonitor(cfg, [S1], bus, reference)
    closed(bus, rs)
    return m.assess(S1)


def test_window_matching_the_profile_is_ok_with_both_z_scores():
    rs = [2.0] * 8 + [-0.667] * 12  # win rate 0.4, mean R ~0.0
    h = monitor(rs)
    assert h.status == "OK" and h.window_trades == 20 and h.win_rate == 0.4
    assert h.z_r == pytest.approx((sum(rs) / 20 - 0.1) / (1.0 / math.sqrt(20)))
    assert h.z_win_rate == pytest.approx(0.0)


def test_a_worse_window_is_weakening_then_out_of_profile():
    weak = monitor([1.5] * 6 + [-0.8] * 14)  # mean R -0.11: z_R ~ -0.95; win rate 0.3: z ~ -0.91
    assert weak.status == "OK"
    weaker = monitor([1.5] * 5 + [-0.8] * 15)  # mean R -0.225: z_R ~ -1.45
    assert weaker.status == "WEAKENING" and weaker.z_r < -1.0
    broken = monitor([1.0] * 2 + [-1.0] * 18)  # win rate 0.1: z ~ -2.7
    assert broken.status == "OUT_OF_PROFILE"


def test_far_better_than_its_profile_is_out_of_profile_too():
    assert monitor([2.0] * 18 + [-1.0] * 2).status == "OUT_OF_PROFILE"


def test_too_few_trades_or_no_reference_is_ok_and_says_why():
    few = monitor([-1.0] * 9)
    assert few.status == "OK" and "fewer than min_trades" in few.reason
    own = monitor([-1.0] * 15, reference=None)  # own history: nothing before the window yet
    assert own.status == "OK" and "no reference" in own.reason


def test_own_history_before_the_window_is_the_reference():
    rs = [1.0, -0.5] * 20 + [-1.0] * 20  # 40 earlier trades (win rate 0.5), then 20 losses
    h = monitor(rs, reference=None)
    assert h.reference["trades"] == 40 and h.reference["win_rate"] == 0.5
    assert h.status == "OUT_OF_PROFILE"


def test_reference_from_a_backtest_report(tmp_path):
    report = {"scenarios": {"A": {"by_strategy": {S1: {"trades": 100, "win_rate": 0.38, "avg_r_multiple": -0.12,
                                                       "sd_r_multiple": 1.1}}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    (p,) = profiles_from_report(str(tmp_path / "report.json"), "A").values()
    assert (p.trades, p.win_rate, p.mean_r, p.sd_r) == (100, 0.38, -0.12, 1.1)
    with pytest.raises(ValueError, match="scenario 'B'"):
        profiles_from_report(str(tmp_path / "report.json"), "B")
    with pytest.raises(ValueError, match="missing.json"):
        profiles_from_report(str(tmp_path / "missing.json"), "A")


@pytest.mark.parametrize("by_strategy, where", [
    ([], "by_strategy: Input should be a valid dictionary"),
    ({S1: {"trades": "100", "win_rate": 0.4, "avg_r_multiple": 0.1, "sd_r_multiple": 1.0}},
     f"by_strategy.'{S1}.trades': Input should be a valid integer"),
    ({S1: {"trades": 10, "win_rate": "high", "avg_r_multiple": 0.1, "sd_r_multiple": 1.0}}, "win_rate"),
    ({S1: "S1"}, "Input should be a valid dictionary"),
])
def test_a_malformed_reference_report_is_one_error_naming_the_field(tmp_path, by_strategy, where):
    (tmp_path / "report.json").write_text(json.dumps({"scenarios": {"A": {"by_strategy": by_strategy}}}))
    with pytest.raises(ValueError, match="health.reference_report") as e:
        profiles_from_report(str(tmp_path / "report.json"), "A")
    assert where in str(e.value)


def test_snapshot_file_is_written_whole(tmp_path):
    bus = Bus()
    m = HealthMonitor(CFG, [S1], bus, REF)
    closed(bus, [1.0] * 12)
    m.write(tmp_path / "health.json", "2026-11-21T00:00:00+00:00")
    got = json.loads((tmp_path / "health.json").read_text())
    assert got["strategies"][S1]["window_trades"] == 12 and list(tmp_path.iterdir()) == [tmp_path / "health.json"]


def test_config_rejects_thresholds_in_the_wrong_order():
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="min_trades must not exceed window_trades"):
        HealthConfig(window_trades=5, min_trades=10)
    with pytest.raises(ValidationError, match="out_of_profile_z must be larger"):
        HealthConfig(weakening_z=2.0, out_of_profile_z=1.5)


def test_the_health_snapshot_is_not_world_readable(tmp_path):
    from deskd.configs.models import HealthConfig
    from deskd.core.bus import Bus
    from deskd.daemon.strategy_health import HealthMonitor

    path = tmp_path / "deskd-health.json"
    HealthMonitor(HealthConfig(), ["S1"], Bus()).write(path, "2026-11-22T00:00:00+00:00")
    assert path.stat().st_mode & 0o777 == 0o640
