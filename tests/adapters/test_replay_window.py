"""A replay window trades only its bars: the strategies warm up on the bars just before it, no
trade opens before its start, and nothing after its end is read into the desk."""

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, Window, replay, replay_bars, replay_window
from deskd.core.events import Decision, Fill


def feed_of(cfg):
    return ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)


def run(cfg, window=None):
    desk = paper_desk(cfg)
    decisions, fills = [], []
    desk.bus.subscribe(Decision, decisions.append)
    desk.bus.subscribe(Fill, fills.append)
    n = replay(desk, feed_of(cfg)) if window is None else replay_window(desk, feed_of(cfg), window)
    return n, decisions, fills


def test_nothing_trades_outside_the_window_and_the_warm_up_makes_signals_at_once(cfg_all_strategies):
    cfg = cfg_all_strategies
    times = sorted({b.bar_ts for b in replay_bars(feed_of(cfg))})
    start, end = times[len(times) // 3], times[2 * len(times) // 3]
    n, decisions, fills = run(cfg, Window(start, end, warmup_bars=300))
    assert n == sum(1 for b in replay_bars(feed_of(cfg)) if start <= b.bar_ts < end)
    assert min(d.bar_ts for d in decisions) >= start and max(d.bar_ts for d in decisions) < end
    assert min(f.fill_ts for f in fills) > start
    cold = run(cfg, Window(start, end, warmup_bars=0))[1]
    # cold, no strategy can signal before its EMA(50) is defined; warmed up, it may at once
    assert min(d.bar_ts for d in cold) >= start + 49 * 900 > min(d.bar_ts for d in decisions)


def test_a_window_with_all_the_history_as_warm_up_signals_exactly_as_the_full_run(cfg_all_strategies):
    cfg = cfg_all_strategies
    times = sorted({b.bar_ts for b in replay_bars(feed_of(cfg))})
    start = times[len(times) // 2]
    _, full, _ = run(cfg)
    _, win, _ = run(cfg, Window(start, None, warmup_bars=len(times)))
    signals = lambda ds: [(d.bar_ts, d.symbol, d.strategy_id, d.side, d.sl_pips) for d in ds if d.bar_ts >= start]  # noqa: E731
    assert signals(win) == signals(full) and len(signals(win)) > 100


def test_an_empty_window_trades_nothing(cfg_all_strategies):
    n, decisions, fills = run(cfg_all_strategies, Window(0, 1, warmup_bars=10))
    assert (n, decisions, fills) == (0, [], [])
