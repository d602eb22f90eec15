"""risk.max_drawdown_frac: a fall that far below the equity peak HALTS the desk until an operator
resumes it, in a backtest as live; the halt and the peak survive a restart."""

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, replay_bars
from deskd.core.events import Decision, StateChanged
from deskd.persistence.recovery import load_snapshot, restore
from deskd.persistence.store import StoreWriter, open_store, sqlite_url


def halting_config(cfg_all_strategies, frac=0.05):
    risk = cfg_all_strategies.risk.model_copy(update={"max_drawdown_frac": frac,
                                                       "dd_day_limit_frac": 0.9, "dd_week_limit_frac": 0.9})
    return cfg_all_strategies.model_copy(update={"risk": risk})


def test_a_breach_halts_entries_for_good_until_an_operator_resumes(cfg_all_strategies, tmp_path):
    cfg = halting_config(cfg_all_strategies)
    desk = paper_desk(cfg)
    decisions, changes = [], []
    desk.bus.subscribe(Decision, decisions.append)
    desk.bus.subscribe(StateChanged, changes.append)
    engine = open_store(sqlite_url(tmp_path / "s.db"))
    writer = StoreWriter(engine.connect(), desk, commit_every_bars=500)
    feed = ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)
    bars = list(replay_bars(feed))
    half = len(bars) // 2
    for bar in bars[:half]:
        desk.on_bar(bar)
        writer.end_bar(bar)
    writer.commit()
    (halt,) = [c for c in changes if c.trigger == "DD_BREACH"]
    assert halt.new == "HALTED" and "from the equity peak" in halt.reason
    after = [d for d in decisions if d.bar_ts > halt.bar_ts]
    assert after and all(d.action == "SKIPPED" for d in after)
    reasons = {d.reason for d in after if not d.reason.startswith("conflict:")}
    assert reasons <= {"guard:max_dd_halt", "position_open", "order_pending"} and "guard:max_dd_halt" in reasons
    peak = desk.guard.peak_equity_usd
    assert desk.ledger.equity_usd <= 0.95 * peak and peak >= cfg.account.starting_equity_usd

    with engine.connect() as c:  # a restart keeps the halt and the peak
        snap = load_snapshot(c, cfg.desk, "A")
    again = paper_desk(cfg)
    for bar in bars[:half]:
        again.warm_up(bar)
    restore(again, snap)
    assert again.state.state.value == "HALTED" and again.guard.verdict().code == "max_dd"
    assert again.guard.peak_equity_usd == peak
    again.operator_resume("reviewed the drawdown")  # no force needed: only an operator lifts it
    assert again.state.state.value == "RUNNING" and again.guard.peak_equity_usd == again.ledger.equity_usd
    traded = []
    again.bus.subscribe(Decision, lambda d: traded.append(d) if d.action == "TRADED" else None)
    for bar in bars[half:]:
        again.on_bar(bar)
    assert traded  # it trades again after the resume


def test_off_by_default_the_same_run_never_halts_on_the_peak(cfg_all_strategies):
    desk = paper_desk(cfg_all_strategies)
    changes = []
    desk.bus.subscribe(StateChanged, changes.append)
    feed = ReplayFeed(dict(cfg_all_strategies.data.files), cfg_all_strategies.data.timezone,
                      cfg_all_strategies.universe.timeframe_s)
    for bar in replay_bars(feed):
        desk.on_bar(bar)
    assert cfg_all_strategies.risk.max_drawdown_frac is None
    assert not [c for c in changes if "equity peak" in c.reason]


def test_a_peak_breach_during_a_day_halt_is_journaled_as_its_own_transition(cfg_all_strategies):
    """The fall from the peak crossing its limit while a day halt holds: the guard's halt becomes
    the one only an operator lifts, and the journal says so (it used to keep the day halt's
    reason, a halt that looks as if it lifts by itself)."""
    risk = cfg_all_strategies.risk.model_copy(update={"max_drawdown_frac": 0.015, "dd_day_limit_frac": 0.01,
                                                       "dd_week_limit_frac": 0.9})
    cfg = cfg_all_strategies.model_copy(update={"risk": risk})
    desk = paper_desk(cfg)
    changes = []
    desk.bus.subscribe(StateChanged, changes.append)
    feed = ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)
    for bar in replay_bars(feed):
        desk.on_bar(bar)
        if desk.guard.verdict().code == "max_dd":
            break
    assert desk.guard.verdict().code == "max_dd"
    (peak_halt,) = [c for c in changes if "from the equity peak" in c.reason]
    assert peak_halt is changes[-1]
    assert (peak_halt.old, peak_halt.new, peak_halt.trigger) == ("HALTED", "HALTED", "DD_BREACH")
    day_halt = changes[-2]  # the day halt it took over
    assert (day_halt.old, day_halt.new, day_halt.trigger) == ("RUNNING", "HALTED", "DD_BREACH")
    assert "equity peak" not in day_halt.reason
    assert desk.state.halt_cause.value == "DD_BREACH"
